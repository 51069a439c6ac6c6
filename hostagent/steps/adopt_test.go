package steps

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
	"github.com/agentkeys/agentkeys-infra/hostagent/internal/sandboxtest"
)

// oldCheckout clones the repo where the old scripts left it and adds what a
// real checkout holds beside git's files: an executable, a private file, a
// symlink, a build cache directory with its own mode.
func oldCheckout(t *testing.T, env *agent.Env, repo *sandboxtest.Repo) string {
	t.Helper()
	old := env.Path("/home/ubuntu/agentKeys")
	require.NoError(t, os.MkdirAll(filepath.Dir(old), 0o755))
	sandboxtest.Git(t, filepath.Dir(old), "clone", "-q", repo.Bare, old)
	require.NoError(t, os.MkdirAll(filepath.Join(old, "target/release"), 0o750))
	require.NoError(t, os.WriteFile(filepath.Join(old, "target/release/broker"), []byte("#!/bin/sh\necho built\n"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(old, "target/.secret-cache"), []byte("kept"), 0o600))
	require.NoError(t, os.Symlink("release/broker", filepath.Join(old, "target/current")))
	require.NoError(t, os.Chmod(filepath.Join(old, "target/release"), 0o750))
	return old
}

// assertAdopted checks the adopted tree is the old one, modes and links
// included, that git sees the same clean checkout, and the old tree is gone.
func assertAdopted(t *testing.T, env *agent.Env, old, head string) {
	t.Helper()
	dir := env.Path("/home/agentkey/agentKeys")
	assert.NoDirExists(t, old, "the old tree is removed once the copy is in place")
	st, err := os.Stat(filepath.Join(dir, "target/release/broker"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), st.Mode().Perm())
	st, err = os.Stat(filepath.Join(dir, "target/.secret-cache"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	st, err = os.Stat(filepath.Join(dir, "target/release"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o750), st.Mode().Perm())
	link, err := os.Readlink(filepath.Join(dir, "target/current"))
	require.NoError(t, err, "symlink kept as a symlink")
	assert.Equal(t, "release/broker", link)
	assert.Equal(t, head, sandboxtest.Git(t, dir, "rev-parse", "HEAD"))
	assert.Empty(t, sandboxtest.Git(t, dir, "status", "--porcelain", "--untracked-files=no"), "checkout is clean")
	ents, _ := os.ReadDir(filepath.Dir(dir))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	assert.Equal(t, []string{"agentKeys"}, names, "no temp copy or marker left beside the checkout")
}

const realXdevEnv = "AGENTKEYS_TEST_IN_MOUNT_NS"

// TestSourceAdoptsAcrossRealFilesystems puts the login user's home on a
// tmpfs (in a private mount namespace, so the machine's mounts are never
// changed) while the old checkout stays on the temp dir's filesystem, so
// the move is a real EXDEV.
func TestSourceAdoptsAcrossRealFilesystems(t *testing.T) {
	if os.Getenv(realXdevEnv) != "1" {
		unshare, err := exec.LookPath("unshare")
		if err != nil || os.Geteuid() != 0 {
			msg := "needs root and unshare (util-linux) to mount a tmpfs in a private mount namespace"
			if os.Getenv("AGENTKEYS_E2E") == "1" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
		cmd := exec.Command(unshare, "--mount", "--propagation", "private", os.Args[0],
			"-test.run", "^TestSourceAdoptsAcrossRealFilesystems$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), realXdevEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestSourceAdoptsAcrossRealFilesystems") {
			t.Fatalf("in the mount namespace: %v\n%s", err, out)
		}
		return
	}
	repo := sandboxtest.NewRepo(t)
	s := sandboxtest.Spec(t, repo)
	env, _ := newEnv(t, s)
	old := oldCheckout(t, env, repo)
	home := env.Path("/home/agentkey")
	require.NoError(t, os.MkdirAll(home, 0o755))
	require.NoError(t, syscall.Mount("tmpfs", home, "tmpfs", 0, "size=64m"))
	t.Cleanup(func() { syscall.Unmount(home, syscall.MNT_DETACH) })
	require.ErrorIs(t, os.Rename(old, filepath.Join(home, "probe")), syscall.EXDEV, "the two homes must be on different filesystems")

	head := sandboxtest.Git(t, old, "rev-parse", "HEAD")
	res, err := Source{}.Run(context.Background(), env)
	require.NoError(t, err)
	assert.Equal(t, []string{"adopted /home/ubuntu/agentKeys as /home/agentkey/agentKeys (copied across filesystems)"}, res.Changes)
	assertAdopted(t, env, old, head)
	var fs syscall.Statfs_t
	require.NoError(t, syscall.Statfs(env.Path("/home/agentkey/agentKeys"), &fs))
	assert.EqualValues(t, 0x01021994, fs.Type, "the checkout lives on the tmpfs") // TMPFS_MAGIC

	res, err = Source{}.Run(context.Background(), env)
	require.NoError(t, err)
	assert.Empty(t, res.Changes)
}

type killed struct{}

// forceEXDEV makes the move of the old checkout fail as across filesystems.
func forceEXDEV(t *testing.T) {
	renameTree = func(a, b string) error { return &os.LinkError{Op: "rename", Old: a, New: b, Err: syscall.EXDEV} }
	t.Cleanup(func() { renameTree = os.Rename })
}

func TestSourceAdoptCopyFallbackKilledAtEveryPoint(t *testing.T) {
	forceEXDEV(t)
	repo := sandboxtest.NewRepo(t)
	s := sandboxtest.Spec(t, repo)

	// Record the fault points one uninterrupted adoption reaches.
	env, _ := newEnv(t, s)
	old := oldCheckout(t, env, repo)
	head := sandboxtest.Git(t, old, "rev-parse", "HEAD")
	var points []string
	fsx.FaultHook = func(p string) { points = append(points, p) }
	t.Cleanup(func() { fsx.FaultHook = nil })
	res, err := Source{}.Run(context.Background(), env)
	fsx.FaultHook = nil
	require.NoError(t, err)
	assert.Equal(t, []string{"adopted /home/ubuntu/agentKeys as /home/agentkey/agentKeys (copied across filesystems)"}, res.Changes)
	assertAdopted(t, env, old, head)
	require.Contains(t, points, "source:adopt-copied")
	require.Contains(t, points, "source:adopt-renamed")
	t.Logf("fault points: %v", points)

	for n := 1; n <= len(points); n++ {
		env, _ := newEnv(t, s)
		old := oldCheckout(t, env, repo)
		dir := env.Path("/home/agentkey/agentKeys")
		hits := 0
		fsx.FaultHook = func(p string) {
			if hits++; hits == n {
				panic(killed{})
			}
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					if _, ok := r.(killed); !ok {
						panic(r)
					}
				}
			}()
			Source{}.Run(context.Background(), env)
			t.Fatalf("kill %d (%s) not reached", n, points[n-1])
		}()
		fsx.FaultHook = nil
		// Never a partial tree at the destination, never no tree at all.
		switch {
		case isRepo(dir):
			assert.Equal(t, head, sandboxtest.Git(t, dir, "rev-parse", "HEAD"), "killed at %s", points[n-1])
			assert.FileExists(t, filepath.Join(dir, "target/release/broker"), "killed at %s: the whole tree is in place", points[n-1])
		default:
			assert.NoDirExists(t, dir, "killed at %s: a partial destination", points[n-1])
			assert.Equal(t, head, sandboxtest.Git(t, old, "rev-parse", "HEAD"), "killed at %s: the original must be intact", points[n-1])
		}
		res, err := Source{}.Run(context.Background(), env)
		require.NoError(t, err, "re-run after the kill at %s", points[n-1])
		assert.Len(t, res.Changes, 1, "re-run after the kill at %s: %v", points[n-1], res.Changes)
		assertAdopted(t, env, old, head)
		res, err = Source{}.Run(context.Background(), env)
		require.NoError(t, err)
		assert.Empty(t, res.Changes, "third run after the kill at %s", points[n-1])
	}
}

func TestSourceAdoptCopyRefusesSpecialFilesAndKeepsTheOriginal(t *testing.T) {
	forceEXDEV(t)
	repo := sandboxtest.NewRepo(t)
	env, _ := newEnv(t, sandboxtest.Spec(t, repo))
	old := oldCheckout(t, env, repo)
	require.NoError(t, syscall.Mkfifo(filepath.Join(old, "target/pipe"), 0o644))
	_, err := Source{}.Run(context.Background(), env)
	require.Error(t, err)
	assert.Contains(t, err.Error(), filepath.Join(old, "target/pipe"))
	assert.Contains(t, err.Error(), "remove it and re-run")
	assert.DirExists(t, filepath.Join(old, ".git"), "the original is left in place")
	ents, _ := os.ReadDir(env.Path("/home/agentkey"))
	assert.Empty(t, ents, "no partial copy left")
}
