package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"

	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
)

// ManagedMarker starts the header of every text file the agent writes; a
// file without it was written by someone else (the old scripts, an
// operator) and is backed up before the agent replaces or removes it.
const ManagedMarker = "Managed by agentkeys-hostagent"

// RetiredDir is the root-only directory holding backups of files the agent
// replaced or removed but did not write: <RetiredDir>/<host path>.
func RetiredDir(stateDir string) string { return path.Join(AgentDir(stateDir), "retired") }

// Managed reports whether b carries the agent's header.
func Managed(b []byte) bool {
	head := b
	if len(head) > 256 {
		head = head[:256]
	}
	return bytes.Contains(head, []byte(ManagedMarker))
}

// Backup copies the file at host path p into RetiredDir when it exists and
// the agent did not write it (force: whatever wrote it). An earlier backup
// with other content is kept: the new one gets a numbered name. It returns
// the backup's host path ("" when none was needed).
func (e *Env) Backup(res *Result, p string, force bool) (string, error) {
	b, err := os.ReadFile(e.Path(p))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if !force && Managed(b) {
		return "", nil
	}
	dst := path.Join(RetiredDir(e.Spec.StateDir), p)
	for n := 1; ; n++ {
		cur, err := os.ReadFile(e.Path(dst))
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return "", err
		}
		if bytes.Equal(cur, b) {
			return dst, nil
		}
		dst = path.Join(RetiredDir(e.Spec.StateDir), p) + "." + strconv.Itoa(n)
	}
	if e.DryRun {
		if res != nil {
			res.Changes = append(res.Changes, fmt.Sprintf("would back up %s to %s (not written by the agent)", p, dst))
		}
		return dst, nil
	}
	root := e.rootOwner()
	// The retired tree sits in the root-only agent dir: what is below it
	// may be created 0755 by MkdirAll and is still unreachable.
	for _, d := range []string{AgentDir(e.Spec.StateDir), RetiredDir(e.Spec.StateDir), path.Dir(dst)} {
		if _, err := fsx.EnsureDir(e.Root, d, 0o700, root); err != nil {
			return "", err
		}
	}
	if _, err := fsx.WriteFileAtomic(e.Root, dst, b, 0o600, root); err != nil {
		return "", err
	}
	if res != nil {
		res.Changes = append(res.Changes, fmt.Sprintf("backed up %s to %s (not written by the agent)", p, dst))
	}
	return dst, nil
}

// WriteManaged writes a file the agent owns, backing up first a version of
// it the agent did not write.
func (e *Env) WriteManaged(res *Result, p string, data []byte, mode fs.FileMode, o fsx.Owner) (bool, error) {
	d, err := fsx.Differs(e.Root, p, data, mode, o)
	if err != nil || !d {
		return false, err
	}
	if _, err := e.Backup(res, p, false); err != nil {
		return false, fmt.Errorf("back up %s before replacing it: %w", p, err)
	}
	return e.WriteFile(res, p, data, mode, o)
}
