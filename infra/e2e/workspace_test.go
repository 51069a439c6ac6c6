package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
	"github.com/agentkeys/agentkeys-infra/internal/testkit/agentkeysws"
)

// writeWorkspace writes the cargo workspace standing in for the AgentKeys
// one (internal/testkit/agentkeysws): the real package names and feature
// tables, each binary the contract stand-in, so the agent's cargo build and
// the services' runtime contract are both the real ones.
func writeWorkspace(t *testing.T, dir string, _ *spec.HostSpec) {
	t.Helper()
	if err := agentkeysws.Write(dir, agentkeysws.StandinBinary(t)); err != nil {
		t.Fatal(err)
	}
}

// newRepo creates an empty bare repository and returns its path; its
// file:// URL is the stack's agentkeysRepo.
func newRepo(t *testing.T) string {
	t.Helper()
	bare := filepath.Join(t.TempDir(), "agentKeys.git")
	git(t, filepath.Dir(bare), "init", "-q", "--bare", "-b", "main", bare)
	return bare
}

// pushWorkspace commits the stand-in workspace for the services of s to main.
func pushWorkspace(t *testing.T, bare string, s *spec.HostSpec) {
	t.Helper()
	work := filepath.Join(t.TempDir(), "work")
	git(t, filepath.Dir(work), "init", "-q", "-b", "main", work)
	writeWorkspace(t, work, s)
	git(t, work, "add", "-A")
	git(t, work, "commit", "-q", "-m", "stand-in services")
	git(t, work, "push", "-q", bare, "HEAD:main")
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.org")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}
