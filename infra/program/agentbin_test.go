package program

import (
	"debug/elf"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The program ships a static linux agent for the broker's CPU, built
// reproducibly: the same source gives the same hash, so the bring-up does not
// re-run for a rebuild.
func TestAgentBinaryPerArchIsStaticAndReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-builds the host agent")
	}
	t.Setenv(AgentBinaryEnv, "")
	root, err := moduleRoot()
	require.NoError(t, err)
	for arch, machine := range map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64} {
		p, h, err := AgentBinary(root, arch)
		require.NoError(t, err)
		assert.Equal(t, filepath.Join(root, "bin", "agentkeys-hostagent-linux-"+arch), p)
		f, err := elf.Open(p)
		require.NoError(t, err)
		assert.Equal(t, machine, f.Machine, arch)
		assert.Nil(t, f.Section(".interp"), "%s: statically linked", arch)
		f.Close()

		// A second, uncached build yields the same bytes.
		buildOnce.Lock()
		delete(buildOnce.built, arch)
		buildOnce.Unlock()
		before, err := os.ReadFile(p)
		require.NoError(t, err)
		_, h2, err := AgentBinary(root, arch)
		require.NoError(t, err)
		assert.Equal(t, h, h2, "%s: reproducible", arch)
		after, _ := os.ReadFile(p)
		assert.Equal(t, before, after)
	}
}
