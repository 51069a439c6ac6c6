package realhost

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Each container gets its own /24 from 198.18.0.0/15 (RFC 2544, reserved
// for test networks): of the documentation TEST-NETs, 192.0.2.0/24 can be a
// machine's own uplink and 203.0.113.0/24 is where the package registries
// resolve on these machines, which must never be routed to a container.
const maxSlots = 512

// forbidden is never routed on the host side, whatever the pool says.
var forbidden = netip.MustParsePrefix("203.0.113.0/24")

// slotNet is the /24 of slot n: 198.18.n.0/24, then 198.19.(n-256).0/24.
func slotNet(n int) netip.Prefix {
	a := netip.AddrFrom4([4]byte{198, 18 + byte(n/256), byte(n % 256), 0})
	p := netip.PrefixFrom(a, 24)
	if p.Overlaps(forbidden) {
		panic("realhost: subnet pool overlaps 203.0.113.0/24")
	}
	return p
}

func hostAddr(p netip.Prefix) netip.Addr { return p.Addr().Next() }
func guestAddr(p netip.Prefix) netip.Addr {
	return p.Addr().Next().Next()
}

// names are the host-side objects of slot n; every one carries the prefix
// the sweeper looks for.
type names struct {
	Machine string // machine name, netns, cgroup folder: akrh-N
	Veth    string // host end of the veth pair: akrhN (15 bytes max)
	Table   string // nft table: akrh_N
}

func slotNames(n int) names {
	return names{Machine: fmt.Sprintf("akrh-%d", n), Veth: fmt.Sprintf("akrh%d", n), Table: fmt.Sprintf("akrh_%d", n)}
}

// routedPrefixes are the IPv4 routes of every table, except those on our
// own veths, so a slot never shadows a network the machine uses.
func routedPrefixes() ([]netip.Prefix, error) {
	out, err := exec.Command("ip", "-4", "-o", "route", "show", "table", "all").Output()
	if err != nil {
		return nil, fmt.Errorf("ip route show: %w", err)
	}
	var ps []netip.Prefix
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if f[0] == "local" || f[0] == "broadcast" || f[0] == "unreachable" || f[0] == "blackhole" {
			f = f[1:]
		}
		if len(f) == 0 || f[0] == "default" {
			continue
		}
		if i := indexOf(f, "dev"); i >= 0 && i+1 < len(f) && isOurVeth(f[i+1]) {
			continue
		}
		s := f[0]
		if !strings.Contains(s, "/") {
			s += "/32"
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			ps = append(ps, p)
		}
	}
	return ps, nil
}

func isOurVeth(dev string) bool {
	if !strings.HasPrefix(dev, "akrh") {
		return false
	}
	_, err := strconv.Atoi(strings.TrimPrefix(dev, "akrh"))
	return err == nil
}

func indexOf(f []string, s string) int {
	for i, x := range f {
		if x == s {
			return i
		}
	}
	return -1
}

// nameservers are the IPv4 resolvers a container can reach through NAT: the
// host's, minus loopback ones (a local stub is not reachable from the netns),
// falling back to systemd-resolved's upstream list.
func nameservers() ([]string, error) {
	for _, f := range []string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var ns []string
		for _, line := range strings.Split(string(b), "\n") {
			fl := strings.Fields(line)
			if len(fl) >= 2 && fl[0] == "nameserver" {
				if a, err := netip.ParseAddr(fl[1]); err == nil && a.Is4() && !a.IsLoopback() {
					ns = append(ns, a.String())
				}
			}
		}
		if len(ns) > 0 {
			return ns, nil
		}
	}
	return nil, fmt.Errorf("no IPv4 nameserver reachable from a container in /etc/resolv.conf or /run/systemd/resolve/resolv.conf (loopback stubs do not count)")
}

// uplinkMTU is the MTU of the default route's device; the veth never exceeds
// it, so NATed downloads do not depend on path MTU discovery.
func uplinkMTU() int {
	out, err := exec.Command("ip", "-4", "-o", "route", "show", "default").Output()
	if err != nil {
		return 1500
	}
	f := strings.Fields(string(out))
	if i := indexOf(f, "dev"); i >= 0 && i+1 < len(f) {
		if b, err := os.ReadFile(filepath.Join("/sys/class/net", f[i+1], "mtu")); err == nil {
			if m, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && m >= 576 && m < 1500 {
				return m
			}
		}
	}
	return 1500
}

// setupNet creates the netns with the guest end of a veth pair, the host end
// with the first address of the slot's /24, and the masquerade rule.
func setupNet(n names, p netip.Prefix) error {
	host, guest := hostAddr(p), guestAddr(p)
	mtu := strconv.Itoa(uplinkMTU())
	steps := [][]string{
		{"ip", "netns", "add", n.Machine},
		{"ip", "link", "add", n.Veth, "mtu", mtu, "type", "veth", "peer", "name", "eth0", "mtu", mtu, "netns", n.Machine},
		{"ip", "addr", "add", host.String() + "/24", "dev", n.Veth},
		{"ip", "link", "set", n.Veth, "up"},
		{"ip", "-n", n.Machine, "link", "set", "lo", "up"},
		{"ip", "-n", n.Machine, "addr", "add", guest.String() + "/24", "dev", "eth0"},
		{"ip", "-n", n.Machine, "link", "set", "eth0", "up"},
		{"ip", "-n", n.Machine, "route", "add", "default", "via", host.String()},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(s, " "), err, strings.TrimSpace(string(out)))
		}
	}
	rules := fmt.Sprintf(`table ip %s {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr %s oifname != "%s" masquerade
	}
}
`, n.Table, p, n.Veth)
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft -f (masquerade for %s): %v: %s", p, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// teardownNet removes what setupNet created; each part is tried even when
// another is already gone.
func teardownNet(n names) []error {
	var errs []error
	if tableExists(n.Table) {
		if out, err := exec.Command("nft", "delete", "table", "ip", n.Table).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("nft delete table ip %s: %v: %s", n.Table, err, out))
		}
	}
	if _, err := os.Stat(filepath.Join("/run/netns", n.Machine)); err == nil {
		if out, err := exec.Command("ip", "netns", "delete", n.Machine).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip netns delete %s: %v: %s", n.Machine, err, out))
		}
	}
	// The host end goes with the netns (a moment later), unless a leaked
	// process still holds the netns.
	for i := 0; i < 50 && linkExists(n.Veth); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if linkExists(n.Veth) {
		if out, err := exec.Command("ip", "link", "delete", n.Veth).CombinedOutput(); err != nil && linkExists(n.Veth) {
			errs = append(errs, fmt.Errorf("ip link delete %s: %v: %s", n.Veth, err, out))
		}
	}
	return errs
}

func linkExists(dev string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", dev))
	return err == nil
}

func tableExists(name string) bool {
	return exec.Command("nft", "list", "table", "ip", name).Run() == nil
}

// ourTables lists the nft tables named akrh_N.
func ourTables() []string {
	out, _ := exec.Command("nft", "list", "tables", "ip").Output()
	var ts []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "table" && strings.HasPrefix(f[2], "akrh_") {
			ts = append(ts, f[2])
		}
	}
	return ts
}

const ipForward = "/proc/sys/net/ipv4/ip_forward"

func readForward() (string, error) {
	b, err := os.ReadFile(ipForward)
	return strings.TrimSpace(string(b)), err
}

func writeForward(v string) error {
	return os.WriteFile(ipForward, []byte(v+"\n"), 0o644)
}
