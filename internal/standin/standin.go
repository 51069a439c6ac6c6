package standin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // a Rust main returning Err (anyhow): "Error: ..."
	exitUsage = 2 // clap, and the mock server's process::exit(2)
	// exitStandin is a misuse of the stand-in itself (unknown package, bad
	// test hook): never a code a real binary uses for a contract failure.
	exitStandin = 64
)

// Env var names of the stand-in's own hooks.
const (
	EnvSandboxRoot = "AGENTKEYS_SANDBOX_ROOT"
	EnvSES         = "AGENTKEYS_STANDIN_SES"
	EnvMaxUptime   = "AGENTKEYS_STANDIN_MAX_UPTIME"
	FeaturesFlag   = "--standin-features"
)

type proc struct {
	pkg      Package
	features map[string]bool
	stdout   io.Writer
	stderr   io.Writer
}

// Main runs the service selected by argv (argv[0]'s base name, else
// argv[1]) and returns the process exit code.
func Main(argv []string, stdout, stderr io.Writer) int {
	if len(argv) == 0 {
		fmt.Fprintln(stderr, "agentkeys-standin: no arguments")
		return exitStandin
	}
	args := argv[1:]
	pkg, ok := LookupPackage(filepath.Base(argv[0]))
	if !ok {
		if len(args) == 0 {
			fmt.Fprintf(stderr, "usage: agentkeys-standin <package> [%s a,b] [args...]\npackages: %s\n", FeaturesFlag, packageNames())
			return exitStandin
		}
		if pkg, ok = LookupPackage(args[0]); !ok {
			fmt.Fprintf(stderr, "agentkeys-standin: unknown package %q (one of %s)\n", args[0], packageNames())
			return exitStandin
		}
		args = args[1:]
	}
	p := &proc{pkg: pkg, features: DeployedFeatures(pkg), stdout: stdout, stderr: stderr}
	if len(args) > 0 && (args[0] == FeaturesFlag || strings.HasPrefix(args[0], FeaturesFlag+"=")) {
		v, has := strings.CutPrefix(args[0], FeaturesFlag+"=")
		args = args[1:]
		if !has {
			if len(args) == 0 {
				fmt.Fprintf(stderr, "agentkeys-standin: %s needs a value\n", FeaturesFlag)
				return exitStandin
			}
			v, args = args[0], args[1:]
		}
		on, unknown := pkg.Closure(strings.Split(v, ","))
		if len(unknown) > 0 {
			fmt.Fprintf(stderr, "agentkeys-standin: %s has no feature %v\n", pkg.Name, unknown)
			return exitStandin
		}
		p.features = on
	}
	switch pkg.Name {
	case PkgBroker:
		return p.broker(args)
	case PkgMock:
		return p.mock(args)
	case PkgAudit:
		return p.audit(args)
	case PkgEmail:
		return p.email(args)
	default:
		return p.capWorker(args)
	}
}

func packageNames() string {
	var n []string
	for _, p := range Packages {
		n = append(n, p.Name)
	}
	return strings.Join(n, ", ")
}

func (p *proc) logf(format string, a ...any) {
	fmt.Fprintf(p.stderr, "[standin %s] "+format+"\n", append([]any{p.pkg.Name}, a...)...)
}

// fatal is what a Rust main returning Err(e) does: "Error: e", exit 1.
func (p *proc) fatal(err error) int {
	fmt.Fprintf(p.stderr, "Error: %v\n", err)
	return exitError
}

func (p *proc) cliDone(e *cliExit) int {
	io.WriteString(p.stdout, e.stdout)
	io.WriteString(p.stderr, e.stderr)
	return e.code
}

// hostPath is where the service opens path: under AGENTKEYS_SANDBOX_ROOT
// when the host agent's sandbox runs it, and only for absolute paths (a
// relative one resolves against the working directory, as it would).
func hostPath(path string) string {
	root := os.Getenv(EnvSandboxRoot)
	if root == "" || !filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(root, filepath.Clean(path))
}

// exists is Rust's Path::exists: any stat error counts as absent.
func exists(path string) bool {
	_, err := os.Stat(hostPath(path))
	return err == nil
}

// listenRust binds addr the way tokio's TcpListener::bind(&str) does: a
// SocketAddr literal as is, else host:port through the resolver (split at
// the last colon), the first address that binds wins. IPv4 addresses bind
// AF_INET only, as Rust does (Go would otherwise open a dual-stack socket).
func listenRust(addr string) (net.Listener, error) {
	if ap, err := rustSocketAddr(addr); err == nil {
		return listenAddrPort(ap)
	}
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		return nil, errors.New("invalid socket address")
	}
	host := addr[:i]
	port, err := strconv.ParseUint(addr[i+1:], 10, 16)
	if err != nil {
		return nil, errors.New("invalid port value")
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		got, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, fmt.Errorf("failed to lookup address information: %v", err)
		}
		ips = got
	}
	var last error = errors.New("could not resolve to any addresses")
	for _, ip := range ips {
		l, err := listenAddrPort(netip.AddrPortFrom(ip.Unmap(), uint16(port)))
		if err == nil {
			return l, nil
		}
		last = err
	}
	return nil, last
}

func listenAddrPort(ap netip.AddrPort) (net.Listener, error) {
	network := "tcp6"
	if ap.Addr().Is4() {
		network = "tcp4"
	}
	l, err := net.ListenTCP(network, net.TCPAddrFromAddrPort(ap))
	if err != nil {
		return nil, rustIOError(err)
	}
	return l, nil
}

// serveForever is `axum::serve(listener, app).await?` without graceful
// shutdown: it returns only when serving fails (exit 1); a signal ends the
// process with the default disposition, as it ends the real one.
func (p *proc) serveForever(l net.Listener, h http.Handler) int {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	return p.fatal(srv.Serve(l))
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}
