// Package procnet answers, from /proc, whether a process is the one
// listening on a TCP port: a unit's readiness is its own process serving,
// not whatever answers on its port (another process may hold it).
package procnet

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrUnknown means the process's sockets cannot be read (another user's
// process, or /proc mounted with hidepid): ownership cannot be decided.
var ErrUnknown = errors.New("cannot read the process's sockets")

// Alive reports whether pid exists and is not a zombie. kill(2) decides
// existence: /proc may hide a process from us (a unit's ProtectProc=
// invisible hides its main process from its ExecStartPost until that
// process has dropped to the unit's user), while kill answers EPERM, not
// ESRCH, for a process that exists.
func Alive(pid int) bool {
	if pid <= 0 || errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // exists, hidden from us
	}
	// state is the field after the parenthesised command name
	if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z' && b[i+2] != 'X'
	}
	return true
}

// Listens reports whether pid holds a listening TCP socket (IPv4 or IPv6)
// on port, in its own network namespace.
func Listens(pid, port int) (bool, error) {
	inodes, err := listenInodes(pid, port)
	if err != nil {
		return false, err
	}
	if len(inodes) == 0 {
		return false, nil
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil // gone, or hidden until it runs as our user
		}
		if errors.Is(err, os.ErrPermission) {
			return false, fmt.Errorf("pid %d: %w: %v", pid, ErrUnknown, err)
		}
		return false, err
	}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if inode, ok := strings.CutPrefix(link, "socket:["); ok && inodes[strings.TrimSuffix(inode, "]")] {
			return true, nil
		}
	}
	return false, nil
}

// listenInodes returns the inodes of the sockets listening on port in pid's
// network namespace (/proc/PID/net/tcp and tcp6).
func listenInodes(pid, port int) (map[string]bool, error) {
	out := map[string]bool{}
	want := fmt.Sprintf("%04X", port)
	for _, name := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, name))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // tcp6: no IPv6 in this kernel; tcp: the process is gone or hidden
			}
			return nil, err
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fs := strings.Fields(sc.Text())
			if len(fs) < 10 || fs[3] != "0A" { // 0A: LISTEN
				continue
			}
			if i := strings.LastIndexByte(fs[1], ':'); i >= 0 && fs[1][i+1:] == want {
				out[fs[9]] = true
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	return out, nil // a process gone or hidden from us listens nowhere we can see
}

// PortOf is the TCP port of a host:port or URL authority.
func PortOf(hostport string) (int, error) {
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 {
		return 0, fmt.Errorf("%q has no port", hostport)
	}
	return strconv.Atoi(hostport[i+1:])
}
