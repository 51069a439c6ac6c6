// Package ports hands tests loopback TCP ports for servers they start as
// separate processes (nginx, pebble, sshd), which bind the port later.
//
// A port from bind(0) is in the kernel's ephemeral range, where any
// outgoing connection of any test may take it before the server binds it.
// These ports come from below that range instead, where only another
// explicit choice can collide, and are checked free when handed out.
package ports

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

var (
	mu     sync.Mutex
	handed = map[int]bool{} // never hand out a port twice in one process
)

// Free returns one free loopback port.
func Free() (int, error) {
	ps, err := FreeN(1)
	if err != nil {
		return 0, err
	}
	return ps[0], nil
}

// FreeN returns n distinct free loopback ports.
func FreeN(n int) ([]int, error) {
	lo, hi := window()
	mu.Lock()
	defer mu.Unlock()
	var out []int
	for tries := 0; len(out) < n; tries++ {
		if tries > 1000 {
			return nil, fmt.Errorf("no free loopback port in %d-%d after 1000 tries", lo, hi)
		}
		p := lo + rand.IntN(hi-lo)
		if handed[p] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		handed[p] = true
		out = append(out, p)
	}
	return out, nil
}

// window is [lo, hi): the ports below the ephemeral range, above the
// well-known and most registered services.
func window() (int, int) {
	lo, hi := 20000, 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if start, err := strconv.Atoi(f[0]); err == nil && start > 12000 {
				hi = start
				lo = max(10000, start-12768)
			}
		}
	}
	return lo, hi
}
