package e2e

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// InNetns runs f on a thread switched into the network namespace at nsPath.
// Sockets created by f stay in that namespace after f returns; the thread is
// never switched back but discarded (the goroutine exits still locked).
func InNetns(nsPath string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", nsPath, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// DialInNetns dials addr (TCP) from inside the namespace.
func DialInNetns(nsPath, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := InNetns(nsPath, func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	return c, err
}

// dialer dials in nsPath, or in this namespace when nsPath is "".
func dialer(nsPath string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if nsPath == "" {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
		return DialInNetns(nsPath, addr, 10*time.Second)
	}
}
