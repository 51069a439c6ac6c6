package realhost

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// cgroupParents are the hierarchies a container needs its own folder in:
// on a hybrid host (v1 name=systemd plus the unified v2 mount) both, on a
// pure v2 host the root. nspawn and the container's systemd create their
// subfolders inside; two containers in one folder would collide.
func cgroupParents() ([]string, error) {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		return nil, fmt.Errorf("statfs /sys/fs/cgroup: %w", err)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return []string{"/sys/fs/cgroup"}, nil
	}
	var sd, un unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup/systemd", &sd) == nil && sd.Type == unix.CGROUP_SUPER_MAGIC &&
		unix.Statfs("/sys/fs/cgroup/unified", &un) == nil && un.Type == unix.CGROUP2_SUPER_MAGIC {
		return []string{"/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"}, nil
	}
	return nil, errors.New("unsupported cgroup layout: need cgroup v2 at /sys/fs/cgroup, or the hybrid layout (v1 name=systemd at /sys/fs/cgroup/systemd plus v2 at /sys/fs/cgroup/unified)")
}

func cgroupDirs(machine string) []string {
	ps, _ := cgroupParents()
	var out []string
	for _, p := range ps {
		out = append(out, filepath.Join(p, machine))
	}
	return out
}

// cgroupPIDs lists every process in dir and its subfolders.
func cgroupPIDs(dir string) []int {
	var pids []int
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				pids = append(pids, n)
			}
		}
		return nil
	})
	return pids
}

// killCgroups SIGKILLs every process in the folders until they are empty.
func killCgroups(dirs []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var left []int
		for _, d := range dirs {
			left = append(left, cgroupPIDs(d)...)
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v survive SIGKILL in %s", left, strings.Join(dirs, ", "))
		}
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// removeCgroups rmdirs the folders bottom-up (a cgroup folder goes only
// with rmdir, and only once it is empty).
func removeCgroups(dirs []string) error {
	var errs []error
	for _, d := range dirs {
		var all []string
		_ = filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				all = append(all, p)
			}
			return nil
		})
		for i := len(all) - 1; i >= 0; i-- {
			var err error
			for try := 0; try < 50; try++ { // a just-killed process leaves its cgroup a moment later
				if err = unix.Rmdir(all[i]); err == nil || errors.Is(err, unix.ENOENT) {
					err = nil
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("rmdir %s: %w", all[i], err))
			}
		}
	}
	return errors.Join(errs...)
}
