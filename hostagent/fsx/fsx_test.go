package fsx

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWriteFileAtomicWritesOnlyOnChange(t *testing.T) {
	root := t.TempDir()
	changed, err := WriteFileAtomic(root, "/etc/agentkeys/a.env", []byte("A=1\n"), 0o640, NoOwner)
	require.NoError(t, err)
	assert.True(t, changed)
	p := filepath.Join(root, "etc/agentkeys/a.env")
	st, err := os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), st.Mode().Perm())

	changed, err = WriteFileAtomic(root, "/etc/agentkeys/a.env", []byte("A=1\n"), 0o640, NoOwner)
	require.NoError(t, err)
	assert.False(t, changed, "same bytes, mode: nothing written")
	st2, _ := os.Stat(p)
	assert.Equal(t, st.Sys().(*syscall.Stat_t).Ino, st2.Sys().(*syscall.Stat_t).Ino, "file not replaced")

	changed, err = WriteFileAtomic(root, "/etc/agentkeys/a.env", []byte("A=1\n"), 0o600, NoOwner)
	require.NoError(t, err)
	assert.True(t, changed, "mode change is a change")
	changed, err = WriteFileAtomic(root, "/etc/agentkeys/a.env", []byte("A=2\n"), 0o600, NoOwner)
	require.NoError(t, err)
	assert.True(t, changed)
	b, _ := os.ReadFile(p)
	assert.Equal(t, "A=2\n", string(b))
	ents, _ := os.ReadDir(filepath.Dir(p))
	assert.Len(t, ents, 1, "no temp files left behind")
}

func TestWriteFileAtomicOwnerBeforeRename(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	root := t.TempDir()
	var seen os.FileInfo
	FaultHook = func(point string) {
		if point != "before-rename" {
			return
		}
		ents, _ := filepath.Glob(filepath.Join(root, "s", ".secret.tmp-*"))
		require.Len(t, ents, 1)
		seen, _ = os.Stat(ents[0])
	}
	t.Cleanup(func() { FaultHook = nil })
	_, err := WriteFileAtomic(root, "/s/secret", []byte("x"), 0o600, Owner{UID: 4321, GID: 4322})
	require.NoError(t, err)
	require.NotNil(t, seen)
	assert.Equal(t, os.FileMode(0o600), seen.Mode().Perm())
	assert.Equal(t, uint32(4321), seen.Sys().(*syscall.Stat_t).Uid)
	assert.Equal(t, uint32(4322), seen.Sys().(*syscall.Stat_t).Gid)
	d, err := Differs(root, "/s/secret", []byte("x"), 0o600, Owner{UID: 4321, GID: 4322})
	require.NoError(t, err)
	assert.False(t, d)
	d, _ = Differs(root, "/s/secret", []byte("x"), 0o600, Owner{UID: 0, GID: 0})
	assert.True(t, d, "owner differs")
}

func TestCreateOnceNeverReplaces(t *testing.T) {
	root := t.TempDir()
	created, err := CreateOnce(root, "/var/lib/agentkeys/master-secret", []byte("first"), 0o600, NoOwner)
	require.NoError(t, err)
	assert.True(t, created)
	created, err = CreateOnce(root, "/var/lib/agentkeys/master-secret", []byte("second"), 0o600, NoOwner)
	require.NoError(t, err)
	assert.False(t, created)
	b, _ := os.ReadFile(filepath.Join(root, "var/lib/agentkeys/master-secret"))
	assert.Equal(t, "first", string(b))
	ents, _ := os.ReadDir(filepath.Join(root, "var/lib/agentkeys"))
	assert.Len(t, ents, 1, "temp file removed")
}

func TestEnsureDir(t *testing.T) {
	root := t.TempDir()
	c, err := EnsureDir(root, "/var/lib/agentkeys", 0o750, NoOwner)
	require.NoError(t, err)
	assert.True(t, c)
	c, err = EnsureDir(root, "/var/lib/agentkeys", 0o750, NoOwner)
	require.NoError(t, err)
	assert.False(t, c)
	d, _ := DirDiffers(root, "/var/lib/agentkeys", 0o700, NoOwner)
	assert.True(t, d)
	require.NoError(t, os.WriteFile(filepath.Join(root, "f"), nil, 0o644))
	_, err = EnsureDir(root, "/f", 0o755, NoOwner)
	assert.ErrorContains(t, err, "not a directory")
}

func TestHostPathStaysUnderRoot(t *testing.T) {
	assert.Equal(t, "/r/etc/x", HostPath("/r", "/etc/../etc/x"))
	assert.Equal(t, "/r/etc/x", HostPath("/r", "../../etc/x"))
	assert.Equal(t, "/etc/x", HostPath("", "/etc/x"))
}

func TestStaleTempRemovedOnNextWrite(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	stale := filepath.Join(root, "etc", ".group.tmp-123")
	require.NoError(t, os.WriteFile(stale, []byte("half"), 0o644))
	_, err := WriteFileAtomic(root, "/etc/group", []byte("g:x:1:\n"), 0o644, NoOwner)
	require.NoError(t, err)
	assert.NoFileExists(t, stale)
}
