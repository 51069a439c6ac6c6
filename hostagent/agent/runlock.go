package agent

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
)

// RunLockPath is the lock every changing run (apply, renew) holds: the
// renew timer (Persistent=, so it fires at boot after a missed day) and a
// bring-up's apply must not write the same secrets, certificates and
// journal at once.
const RunLockPath = "/run/agentkeys-hostagent.lock"

// RunLockWait bounds how long a run waits for another to finish.
const RunLockWait = 20 * time.Minute

// LockRun takes the run lock under root, waiting (and saying so on log)
// while another run holds it. The returned func releases it; the kernel
// releases it too when the process dies.
func LockRun(ctx context.Context, root string, log io.Writer) (func(), error) {
	p := fsx.HostPath(root, RunLockPath)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("run lock %s: %w", RunLockPath, err)
	}
	deadline := time.Now().Add(RunLockWait)
	said := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if err != unix.EWOULDBLOCK {
			f.Close()
			return nil, fmt.Errorf("run lock %s: %w", RunLockPath, err)
		}
		if !said && log != nil {
			b, _ := os.ReadFile(p)
			fmt.Fprintf(log, "waiting for another agent run to finish (pid %s holds %s)\n", strings.TrimSpace(string(b)), RunLockPath)
			said = true
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("another agent run has held %s for %s; see journalctl -u agentkeys-hostagent-renew.service, or the other apply", RunLockPath, RunLockWait)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}
