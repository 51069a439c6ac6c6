package program

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
	"github.com/agentkeys/agentkeys-infra/infra/config"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestHostSpecGolden pins the host spec of each stack kind: a change to what
// the agent is told shows up as a reviewable diff.
func TestHostSpecGolden(t *testing.T) {
	for _, stack := range []string{"prod", "test", "test-2", "base"} {
		t.Run(stack, func(t *testing.T) {
			cfg, err := config.LoadFile("../..", stack)
			require.NoError(t, err)
			s, err := HostSpec(cfg, "203.0.113.10")
			require.NoError(t, err)
			require.NoError(t, s.Validate(), "the program never emits a spec the agent rejects")
			got, err := s.Encode()
			require.NoError(t, err)
			s2, _ := HostSpec(cfg, "203.0.113.10")
			again, _ := s2.Encode()
			assert.Equal(t, got, again, "identical on every run")

			path := filepath.Join("testdata", "hostspec-"+stack+".json")
			if *update {
				require.NoError(t, os.WriteFile(path, got, 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "run go test ./infra/program -run Golden -update")
			assert.Equal(t, string(want), string(got))

			back, err := spec.Decode(bytes.NewReader(got))
			require.NoError(t, err)
			assert.Equal(t, cfg.Names().Issuer, back.Issuer)
			assert.Len(t, back.Hostnames(), 8, "broker, signer and six workers are served over TLS")
		})
	}
}
