package realhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// StateDir holds one folder per container (its record, its root and, in
// overlay mode, the upper and work dirs) and the machine-wide lock.
const StateDir = "/var/tmp/agentkeys-realhost"

var machinesDir = filepath.Join(StateDir, "machines")

// record is written before any host-side object of a container exists, so
// the sweeper can remove them all if the owner dies.
type record struct {
	Slot       int       `json:"slot"`
	Owner      int       `json:"owner"`      // pid of the test process
	OwnerStart uint64    `json:"ownerStart"` // its start time, against pid reuse
	BootID     string    `json:"bootId"`     // a machine reboot already removed the kernel objects
	Mode       string    `json:"mode"`
	Image      string    `json:"image"`
	Created    time.Time `json:"created"`
}

// forwardState is the ip_forward value found before the first container;
// the last container to go restores it.
type forwardState struct {
	BootID string `json:"bootId"`
	Value  string `json:"value"`
}

func bootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}

// procStart is field 22 of /proc/pid/stat (start time in clock ticks).
func procStart(pid int) (uint64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, false
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	return v, err == nil
}

func (r record) alive() bool {
	if r.BootID != bootID() {
		return false
	}
	st, ok := procStart(r.Owner)
	return ok && st == r.OwnerStart
}

// globalLock serialises slot allocation, sweeping and ip_forward.
func globalLock(ctx context.Context) (func(), error) {
	if err := os.MkdirAll(machinesDir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(StateDir, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := flock(ctx, f, unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

func readRecord(dir string) (record, error) {
	var r record
	b, err := os.ReadFile(filepath.Join(dir, "record.json"))
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

func slotOf(machine string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimPrefix(machine, "akrh-"))
	return n, err == nil && strings.HasPrefix(machine, "akrh-") && n >= 0 && n < maxSlots
}

// allocate reserves the lowest free slot whose /24 no route of this machine
// overlaps, and writes its record. Called with the global lock held.
func allocate(rec record) (int, string, error) {
	routes, err := routedPrefixes()
	if err != nil {
		return 0, "", err
	}
	for n := 0; n < maxSlots; n++ {
		dir := filepath.Join(machinesDir, slotNames(n).Machine)
		if _, err := os.Lstat(dir); err == nil {
			continue
		}
		p := slotNet(n)
		clash := false
		for _, r := range routes {
			if r.Overlaps(p) {
				clash = true
				break
			}
		}
		if clash || linkExists(slotNames(n).Veth) {
			continue
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			return 0, "", err
		}
		rec.Slot = n
		b, _ := json.MarshalIndent(rec, "", "  ")
		if err := writeFileSync(filepath.Join(dir, "record.json"), b, 0o600); err != nil {
			os.RemoveAll(dir)
			return 0, "", err
		}
		return n, dir, nil
	}
	return 0, "", fmt.Errorf("no free container slot: %d in use under %s", maxSlots, machinesDir)
}

// teardownSlot removes every host-side object of slot n and its folder.
func teardownSlot(n int, dir string) error {
	nm := slotNames(n)
	cg := cgroupDirs(nm.Machine)
	var errs []error
	if err := killCgroups(cg, 15*time.Second); err != nil {
		errs = append(errs, err)
	}
	if err := removeCgroups(cg); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, teardownNet(nm)...)
	if err := safeRemoveAll(filepath.Join("/run/systemd/nspawn/propagate", nm.Machine)); err != nil {
		errs = append(errs, err)
	}
	if dir != "" {
		if err := removeSlotDir(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeSlotDir removes the record last: until then a sweeper in another
// process sees a live owner and leaves the folder to it.
func removeSlotDir(dir string) error {
	if err := unmountAll(dir); err != nil {
		return fmt.Errorf("not removing %s: %w", dir, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, e := range ents {
		if e.Name() != "record.json" {
			if err := safeRemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return safeRemoveAll(dir)
}

// raiseForward turns ip_forward on, first saving the value found.
// Called with the global lock held.
func raiseForward() error {
	path := filepath.Join(StateDir, "forward.json")
	var st forwardState
	if b, err := os.ReadFile(path); err != nil || json.Unmarshal(b, &st) != nil || st.BootID != bootID() {
		v, err := readForward()
		if err != nil {
			return err
		}
		b, _ := json.Marshal(forwardState{BootID: bootID(), Value: v})
		if err := writeFileSync(path, b, 0o600); err != nil {
			return err
		}
	}
	return writeForward("1")
}

// restoreForward puts the saved ip_forward value back once no container is
// left. Called with the global lock held.
func restoreForward() error {
	if ents, _ := os.ReadDir(machinesDir); len(ents) > 0 {
		return nil
	}
	path := filepath.Join(StateDir, "forward.json")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var st forwardState
	if err == nil && json.Unmarshal(b, &st) == nil && st.BootID == bootID() {
		if err := writeForward(st.Value); err != nil {
			return err
		}
	}
	return os.Remove(path)
}

// Sweep removes what dead test processes left: containers whose owner is
// gone, and any akrh-* netns, veth, nft table or cgroup folder without a
// record. Boot runs it first; `realhost sweep` runs it by hand.
func Sweep(ctx context.Context) error {
	unlock, err := globalLock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	return sweepLocked()
}

func sweepLocked() error {
	var errs []error
	ents, _ := os.ReadDir(machinesDir)
	owned := map[int]bool{}
	for _, e := range ents {
		dir := filepath.Join(machinesDir, e.Name())
		n, ok := slotOf(e.Name())
		if !ok {
			errs = append(errs, safeRemoveAll(dir))
			continue
		}
		if r, err := readRecord(dir); err == nil && r.alive() {
			owned[n] = true
			continue
		}
		errs = append(errs, teardownSlot(n, dir))
	}
	// Objects without a folder: a teardown interrupted after removing it.
	orphans := map[int]bool{}
	nss, _ := os.ReadDir("/run/netns")
	for _, e := range nss {
		if n, ok := slotOf(e.Name()); ok {
			orphans[n] = true
		}
	}
	links, _ := os.ReadDir("/sys/class/net")
	for _, e := range links {
		if isOurVeth(e.Name()) {
			n, _ := strconv.Atoi(strings.TrimPrefix(e.Name(), "akrh"))
			orphans[n] = true
		}
	}
	for _, t := range ourTables() {
		if n, err := strconv.Atoi(strings.TrimPrefix(t, "akrh_")); err == nil {
			orphans[n] = true
		}
	}
	parents, _ := cgroupParents()
	for _, p := range parents {
		cgs, _ := os.ReadDir(p)
		for _, e := range cgs {
			if n, ok := slotOf(e.Name()); ok && e.IsDir() {
				orphans[n] = true
			}
		}
	}
	for n := range orphans {
		if !owned[n] {
			errs = append(errs, teardownSlot(n, ""))
		}
	}
	errs = append(errs, restoreForward())
	return errors.Join(errs...)
}

// Leftovers lists the host-side objects of containers that still exist:
// what a test asserts is empty after teardown.
func Leftovers() []string {
	var out []string
	ents, _ := os.ReadDir(machinesDir)
	for _, e := range ents {
		out = append(out, "dir "+filepath.Join(machinesDir, e.Name()))
	}
	nss, _ := os.ReadDir("/run/netns")
	for _, e := range nss {
		if _, ok := slotOf(e.Name()); ok {
			out = append(out, "netns "+e.Name())
		}
	}
	links, _ := os.ReadDir("/sys/class/net")
	for _, e := range links {
		if isOurVeth(e.Name()) {
			out = append(out, "link "+e.Name())
		}
	}
	for _, t := range ourTables() {
		out = append(out, "nft table ip "+t)
	}
	parents, _ := cgroupParents()
	for _, p := range parents {
		cgs, _ := os.ReadDir(p)
		for _, e := range cgs {
			if _, ok := slotOf(e.Name()); ok {
				out = append(out, "cgroup "+filepath.Join(p, e.Name()))
			}
		}
	}
	for _, mp := range mountsUnder(machinesDir) {
		out = append(out, "mount "+mp)
	}
	return out
}
