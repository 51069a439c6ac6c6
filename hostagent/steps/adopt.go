package steps

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
)

// renameTree moves the old checkout; a test hook forces the EXDEV path.
var renameTree = os.Rename

// adoptMarker records, beside the checkout, which old tree a copy replaced
// until that tree is removed: a run killed after the copy went in but before
// the old tree was gone finishes the removal instead of leaving two trees.
func adoptMarker(dir string) string {
	return filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+".adopted-from")
}

// adopt moves the host path from to dir (both mapped under Root). A rename
// is enough on one filesystem; across filesystems (EXDEV) the tree is
// copied beside dir, verified against the original, renamed into place,
// and only then is the original removed. It reports whether it copied.
func adopt(env *agent.Env, from, dir string) (bool, error) {
	src := env.Path(from)
	err := renameTree(src, dir)
	if err == nil || !errors.Is(err, syscall.EXDEV) {
		return false, err
	}
	tmp := dir + ".hostagent-adopt"
	if err := os.RemoveAll(tmp); err != nil { // a killed run's partial copy
		return true, err
	}
	if err := copyTree(src, tmp); err != nil {
		os.RemoveAll(tmp)
		return true, fmt.Errorf("copy %s to %s: %w", src, tmp, err)
	}
	if err := sameTree(src, tmp); err != nil {
		os.RemoveAll(tmp)
		return true, fmt.Errorf("the copy of %s does not match it (%w); the original is left in place", src, err)
	}
	fsx.Fault("source:adopt-copied")
	if _, err := fsx.WriteFileAtomic("", adoptMarker(dir), []byte(from+"\n"), 0o600, fsx.NoOwner); err != nil {
		return true, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return true, err
	}
	if err := syncPath(filepath.Dir(dir)); err != nil {
		return true, err
	}
	fsx.Fault("source:adopt-renamed")
	_, err = finishAdoption(env, dir)
	return true, err
}

// finishAdoption removes the old tree a verified copy replaced, when the
// marker names one of the spec's adoptFrom paths, then the marker. It
// returns the old tree's host path when it removed it. Without a checkout
// at dir the marker is stale (the copy never went in) and only it goes.
func finishAdoption(env *agent.Env, dir string) (string, error) {
	m := adoptMarker(dir)
	b, err := os.ReadFile(m)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	from, removed := strings.TrimSpace(string(b)), ""
	if isRepo(dir) && slices.Contains(env.Spec.Source.AdoptFrom, from) {
		if _, err := os.Lstat(env.Path(from)); err == nil {
			removed = from
		}
		if err := os.RemoveAll(env.Path(from)); err != nil {
			return "", fmt.Errorf("remove %s after copying it to %s: %w", from, env.Spec.Source.Dir, err)
		}
	}
	if err := os.Remove(m); err != nil {
		return "", err
	}
	return removed, syncPath(filepath.Dir(dir))
}

// copyTree copies src to dst (which must not exist): directories, regular
// files and symlinks with their modes, times and, as root, owners. Other
// file types are refused by name.
func copyTree(src, dst string) error {
	var dirs []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case st.IsDir():
			// Writable while filling it; its own mode is set once it is full.
			if err := os.Mkdir(to, 0o700); err != nil {
				return err
			}
			dirs = append(dirs, rel)
			return nil
		case st.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, to); err != nil {
				return err
			}
		case st.Mode().IsRegular():
			if err := copyFile(p, to, st); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s is a %s, which adoption does not copy; remove it and re-run", p, st.Mode().Type())
		}
		return copyAttrs(to, st)
	})
	if err != nil {
		return err
	}
	// Deepest first, so a read-only directory is closed after its children.
	for i := len(dirs) - 1; i >= 0; i-- {
		to := filepath.Join(dst, dirs[i])
		st, err := os.Lstat(filepath.Join(src, dirs[i]))
		if err != nil {
			return err
		}
		if err := syncPath(to); err != nil {
			return err
		}
		if err := copyAttrs(to, st); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string, st fs.FileInfo) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// modeBits are the mode bits a copy keeps.
const modeBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

// copyAttrs gives dst src's owner (as root), mode and times; owner first,
// since chown clears setuid bits.
func copyAttrs(dst string, st fs.FileInfo) error {
	sys, _ := st.Sys().(*syscall.Stat_t)
	if sys != nil && os.Geteuid() == 0 {
		if err := os.Lchown(dst, int(sys.Uid), int(sys.Gid)); err != nil {
			return err
		}
	}
	if st.Mode()&fs.ModeSymlink == 0 {
		if err := os.Chmod(dst, unixMode(st.Mode())); err != nil {
			return err
		}
	}
	if sys == nil {
		return nil
	}
	ts := []unix.Timespec{unix.NsecToTimespec(sys.Atim.Nano()), unix.NsecToTimespec(sys.Mtim.Nano())}
	return unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// unixMode keeps the permission and special bits in os.Chmod's terms.
func unixMode(m fs.FileMode) fs.FileMode { return m & modeBits }

// sameTree verifies that b holds exactly a's entries: same types, mode
// bits, symlink targets, and byte-identical file contents.
func sameTree(a, b string) error {
	n := 0
	err := filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n++
		rel, _ := filepath.Rel(a, p)
		q := filepath.Join(b, rel)
		sa, err := os.Lstat(p)
		if err != nil {
			return err
		}
		sb, err := os.Lstat(q)
		if err != nil {
			return err
		}
		if sa.Mode().Type() != sb.Mode().Type() {
			return fmt.Errorf("%s: type %s, copy %s", rel, sa.Mode().Type(), sb.Mode().Type())
		}
		if sa.Mode()&fs.ModeSymlink != 0 {
			ta, err1 := os.Readlink(p)
			tb, err2 := os.Readlink(q)
			if err1 != nil || err2 != nil || ta != tb {
				return fmt.Errorf("%s: symlink target differs", rel)
			}
			return nil
		}
		if unixMode(sa.Mode()) != unixMode(sb.Mode()) {
			return fmt.Errorf("%s: mode %v, copy %v", rel, sa.Mode(), sb.Mode())
		}
		if sa.Mode().IsRegular() {
			if sa.Size() != sb.Size() {
				return fmt.Errorf("%s: size %d, copy %d", rel, sa.Size(), sb.Size())
			}
			ha, err1 := fileHash(p)
			hb, err2 := fileHash(q)
			if err := errors.Join(err1, err2); err != nil {
				return err
			}
			if !bytes.Equal(ha, hb) {
				return fmt.Errorf("%s: content differs", rel)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	m := 0
	if err := filepath.WalkDir(b, func(_ string, _ fs.DirEntry, err error) error { m++; return err }); err != nil {
		return err
	}
	if m != n {
		return fmt.Errorf("%d entries, copy %d", n, m)
	}
	return nil
}

func fileHash(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
