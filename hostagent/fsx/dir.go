package fsx

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// File is one file of a directory written by ReplaceDir.
type File struct {
	Name string
	Data []byte
	Mode fs.FileMode
}

// Staged names the sibling directories ReplaceDir works in: the next
// content is built in .<base>.new; without RENAME_EXCHANGE the previous
// content is moved to .<base>.old for a moment.
func staged(p string) (next, prev string) {
	d, b := filepath.Dir(p), filepath.Base(p)
	return filepath.Join(d, "."+b+".new"), filepath.Join(d, "."+b+".old")
}

// noExchange forces the rename-aside fallback (tests; filesystems without
// RENAME_EXCHANGE take it on their own).
var noExchange = false

// ReplaceDir makes root+dir hold exactly files, replacing its previous
// content as a unit: a reader (or a re-run after a crash) sees the old set
// or the new set, never a mix. The new set is written in a staged sibling
// directory (each file with its mode and owner before its bytes, fsynced),
// then swapped in with one renameat2(RENAME_EXCHANGE), and the previous
// set is removed. Call RecoverDir first: it keeps what a killed run staged.
func ReplaceDir(root, dir string, files []File, mode fs.FileMode, o Owner) error {
	p := HostPath(root, dir)
	next, _ := staged(p)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.RemoveAll(next); err != nil {
		return err
	}
	if err := os.Mkdir(next, mode.Perm()); err != nil {
		return err
	}
	if err := setMeta(next, mode, o); err != nil {
		return err
	}
	for _, f := range files {
		if err := writeNew(filepath.Join(next, f.Name), f.Data, f.Mode, o); err != nil {
			return fmt.Errorf("write %s: %w", filepath.Join(p, f.Name), err)
		}
		Fault("replace-dir:wrote-file")
	}
	if err := syncDir(next); err != nil {
		return err
	}
	Fault("replace-dir:before-swap")
	return promote(p, next)
}

func setMeta(p string, mode fs.FileMode, o Owner) error {
	if err := os.Chmod(p, mode.Perm()); err != nil {
		return err
	}
	if o.UID >= 0 || o.GID >= 0 {
		return os.Lchown(p, o.UID, o.GID)
	}
	return nil
}

// writeNew creates p (which must not exist) with mode and owner set before
// any byte is written, then fsyncs it.
func writeNew(p string, data []byte, mode fs.FileMode, o Owner) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = f.Chmod(mode.Perm())
	if err == nil && (o.UID >= 0 || o.GID >= 0) {
		err = f.Chown(o.UID, o.GID)
	}
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// promote puts the complete staged directory next at p and removes what p held.
func promote(p, next string) error {
	parent := filepath.Dir(p)
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		if err := os.Rename(next, p); err != nil {
			return err
		}
		return syncDir(parent)
	} else if err != nil {
		return err
	}
	err := errors.New("RENAME_EXCHANGE disabled")
	if !noExchange {
		err = unix.Renameat2(unix.AT_FDCWD, next, unix.AT_FDCWD, p, unix.RENAME_EXCHANGE)
	}
	if err == nil {
		if err := syncDir(parent); err != nil {
			return err
		}
		Fault("replace-dir:after-swap")
		return os.RemoveAll(next) // the previous content now
	}
	if !noExchange && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("swap %s into %s: %w", next, p, err)
	}
	// No RENAME_EXCHANGE on this filesystem: move the old set aside, then the
	// new one in. A crash between leaves no p; RecoverDir finds both.
	_, prev := staged(p)
	if err := os.RemoveAll(prev); err != nil {
		return err
	}
	if err := os.Rename(p, prev); err != nil {
		return err
	}
	if err := syncDir(parent); err != nil {
		return err
	}
	Fault("replace-dir:moved-aside")
	if err := os.Rename(next, p); err != nil {
		return err
	}
	if err := syncDir(parent); err != nil {
		return err
	}
	Fault("replace-dir:after-swap")
	return os.RemoveAll(prev)
}

// RecoverDir finishes or discards a ReplaceDir that a crash interrupted.
// An old set moved aside is put back when dir is missing (it was live
// before) and removed otherwise (the new set made it in). A staged new set
// is given to keep with the current directory's path ("" when there is
// none): promoted into dir when keep says so, removed otherwise. keep must
// accept only a complete, usable set that is newer than the current one:
// a kill right after the swap leaves the previous set staged. It reports
// whether dir changed.
func RecoverDir(root, dir string, keep func(candidate, current string) bool) (bool, error) {
	p := HostPath(root, dir)
	next, prev := staged(p)
	changed := false
	if exists(prev) {
		if !exists(p) {
			if err := os.Rename(prev, p); err != nil {
				return false, err
			}
			if err := syncDir(filepath.Dir(p)); err != nil {
				return false, err
			}
			changed = true
		} else if err := os.RemoveAll(prev); err != nil {
			return false, err
		}
	}
	if !exists(next) {
		return changed, nil
	}
	cur := p
	if !exists(p) {
		cur = ""
	}
	if !keep(next, cur) {
		return changed, os.RemoveAll(next)
	}
	return true, promote(p, next)
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
