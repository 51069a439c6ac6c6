// Package fsx writes host files crash-safely: a reader (or a re-run after a
// crash) sees either the old file or the complete new one, with its final mode
// and owner, never a partial write.
package fsx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// HostPath maps an absolute host path under root ("" on a real host).
func HostPath(root, path string) string {
	if root == "" {
		return filepath.Clean(path)
	}
	return filepath.Join(root, filepath.Clean("/"+path))
}

// Owner says who owns a file; -1 leaves that id unchanged.
type Owner struct{ UID, GID int }

// NoOwner leaves ownership as the process creates it.
var NoOwner = Owner{-1, -1}

// Differs reports whether the file at root+path lacks exactly data, mode and owner.
func Differs(root, path string, data []byte, mode fs.FileMode, o Owner) (bool, error) {
	p := HostPath(root, path)
	st, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if !st.Mode().IsRegular() {
		return false, fmt.Errorf("%s exists and is not a regular file; move it away", p)
	}
	if st.Size() != int64(len(data)) || st.Mode().Perm() != mode.Perm() || !ownedBy(st, o) {
		return true, nil
	}
	cur, err := os.ReadFile(p)
	if err != nil {
		return false, err
	}
	return !bytes.Equal(cur, data), nil
}

func ownedBy(st fs.FileInfo, o Owner) bool {
	s, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	return (o.UID < 0 || int(s.Uid) == o.UID) && (o.GID < 0 || int(s.Gid) == o.GID)
}

// WriteFileAtomic makes root+path hold data with mode and owner. It writes
// nothing when the file already matches and reports whether it changed
// anything. The new content goes to a temp file in the same directory, which
// is fsynced and given its mode and owner before the rename; the directory is
// fsynced after. Parent directories are created 0755 root-owned if missing.
func WriteFileAtomic(root, path string, data []byte, mode fs.FileMode, o Owner) (bool, error) {
	differs, err := Differs(root, path, data, mode, o)
	if err != nil || !differs {
		return false, err
	}
	p := HostPath(root, path)
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	removeStaleTemps(dir, filepath.Base(p))
	tmp, err := writeTemp(dir, filepath.Base(p), data, mode, o)
	if err != nil {
		return false, err
	}
	Fault("before-rename")
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("write %s: %w", p, err)
	}
	Fault("after-rename")
	return true, syncDir(dir)
}

// CreateOnce writes root+path only if it does not exist, atomically, and
// never replaces an existing file, even one created concurrently: the temp
// file is hard-linked into place, which fails if the name is taken.
func CreateOnce(root, path string, data []byte, mode fs.FileMode, o Owner) (created bool, err error) {
	p := HostPath(root, path)
	if _, err := os.Lstat(p); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	removeStaleTemps(dir, filepath.Base(p))
	tmp, err := writeTemp(dir, filepath.Base(p), data, mode, o)
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp)
	Fault("before-rename")
	if err := os.Link(tmp, p); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, fmt.Errorf("create %s: %w", p, err)
	}
	Fault("after-rename")
	return true, syncDir(dir)
}

// removeStaleTemps deletes temp files a killed run left for this file; the
// agent is the only writer, so none of them is in use.
func removeStaleTemps(dir, base string) {
	old, _ := filepath.Glob(filepath.Join(dir, "."+base+".tmp-*"))
	for _, o := range old {
		os.Remove(o)
	}
}

func writeTemp(dir, base string, data []byte, mode fs.FileMode, o Owner) (string, error) {
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(name)
		return "", fmt.Errorf("write %s: %w", filepath.Join(dir, base), err)
	}
	// Mode and owner before any byte lands, so a secret is never readable by others.
	if err := f.Chmod(mode.Perm()); err != nil {
		return fail(err)
	}
	if o.UID >= 0 || o.GID >= 0 {
		if err := f.Chown(o.UID, o.GID); err != nil {
			return fail(err)
		}
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// EnsureDir makes root+path a directory with mode and owner, reporting a change.
func EnsureDir(root, path string, mode fs.FileMode, o Owner) (bool, error) {
	p := HostPath(root, path)
	st, err := os.Lstat(p)
	changed := false
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return false, err
		}
		if err := os.Mkdir(p, mode.Perm()); err != nil && !errors.Is(err, fs.ErrExist) {
			return false, err
		}
		changed = true
		if st, err = os.Lstat(p); err != nil {
			return false, err
		}
	case err != nil:
		return false, err
	case !st.IsDir():
		return false, fmt.Errorf("%s exists and is not a directory; move it away", p)
	}
	if st.Mode().Perm() != mode.Perm() {
		if err := os.Chmod(p, mode.Perm()); err != nil {
			return false, err
		}
		changed = true
	}
	if !ownedBy(st, o) {
		if err := os.Lchown(p, o.UID, o.GID); err != nil {
			return false, err
		}
		changed = true
	}
	return changed, nil
}

// DirDiffers reports whether EnsureDir would change anything.
func DirDiffers(root, path string, mode fs.FileMode, o Owner) (bool, error) {
	st, err := os.Lstat(HostPath(root, path))
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return !st.IsDir() || st.Mode().Perm() != mode.Perm() || !ownedBy(st, o), nil
}

// FaultEnv names the fault-injection point: "<point>" or "<point>:<n>" kills
// the process with SIGKILL the n-th time (default first) the point is reached.
const FaultEnv = "AGENTKEYS_HOSTAGENT_FAULT"

// FaultHook, when set (by in-process tests), is called at every fault point
// instead of consulting FaultEnv.
var FaultHook func(point string)

var (
	faultMu   sync.Mutex
	faultHits = map[string]int{}
)

// Fault marks a named point where a crash test may kill the process.
func Fault(point string) {
	if FaultHook != nil {
		FaultHook(point)
		return
	}
	want := os.Getenv(FaultEnv)
	if want == "" {
		return
	}
	name, nth := want, 1
	if i := strings.LastIndexByte(want, ':'); i > 0 {
		if n, err := strconv.Atoi(want[i+1:]); err == nil {
			name, nth = want[:i], n
		}
	}
	if name != point {
		return
	}
	faultMu.Lock()
	faultHits[point]++
	hit := faultHits[point] == nth
	faultMu.Unlock()
	if hit {
		fmt.Fprintf(os.Stderr, "fault injected at %s\n", want)
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL is not deliverable late; never return
	}
}

// RemoveFile removes root+path if it exists and fsyncs its directory, so
// that the removal survives a crash. It reports whether a file was removed.
func RemoveFile(root, path string) (bool, error) {
	p := HostPath(root, path)
	if err := os.Remove(p); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	return true, syncDir(filepath.Dir(p))
}

// ReadJSON decodes the JSON record at path under root into v. found is
// false when there is no such file; an error with found true means the
// record exists but does not parse, for the caller to word the remedy.
func ReadJSON(root, path string, v any) (found bool, err error) {
	b, err := os.ReadFile(HostPath(root, path))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, json.Unmarshal(b, v)
}
