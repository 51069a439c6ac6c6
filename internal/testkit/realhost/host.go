package realhost

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// CopyMode is how a container gets its throwaway root.
type CopyMode string

const (
	// Overlay mounts overlayfs on the cached root (instant; the default).
	Overlay CopyMode = "overlay"
	// Copy is cp -a --reflink=auto of the cached root (about 1 s for 280 MB
	// on ext4; the fallback where overlayfs cannot be mounted).
	Copy CopyMode = "copy"
)

// Options shape one container. The zero value is a bookworm host with the
// login user ubuntu, booted on an overlay.
type Options struct {
	// Hostname defaults to the EC2 style ip-198-18-N-2.
	Hostname string
	// Copy defaults to Overlay, falling back to Copy when the mount fails.
	Copy CopyMode
	// BootTimeout bounds each boot until SSH answers and systemd has
	// settled; default 2 minutes.
	BootTimeout time.Duration
	// Logf receives progress lines; Boot defaults it to t.Logf.
	Logf func(format string, args ...any)
}

// Host is one booted container.
type Host struct {
	Name       string       // machine name, netns and cgroup folder: akrh-N
	Hostname   string       // its hostname
	Addr       string       // its IPv4 address, reachable from this machine
	HostAddr   string       // this machine's address on the container's /24 (for servers tests run)
	Subnet     netip.Prefix // the container's /24
	Port       int          // sshd's port: 22
	User       string       // login user with passwordless sudo
	PrivateKey []byte       // the user's OpenSSH private key (PEM)
	PublicKey  string       // its authorized_keys line
	HostKey    string       // sshd's ed25519 host key, "ssh-ed25519 AAAA…"
	KeyFile    string       // PrivateKey on disk (0600), for the ssh CLI
	KnownHosts string       // known_hosts file pinning HostKey
	BootTime   time.Duration
	PrepTime   time.Duration // root copy or overlay + network, before the first boot
	Mode       CopyMode

	slot      int
	dir       string
	root      string
	image     *Image
	releaseIm func()
	opts      Options
	t         testing.TB
	signer    ssh.Signer
	hostPub   ssh.PublicKey

	mu      sync.Mutex
	cur     *exec.Cmd
	boots   int
	closing bool
	exited  chan struct{} // closed when the supervisor stops restarting
	exitErr error
	client  *ssh.Client

	closeOnce sync.Once
	closeErr  error
}

var hostnameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Boot starts a container for t and tears it down in t.Cleanup. A missing
// tool skips t, or fails it under AGENTKEYS_E2E=1.
func Boot(t testing.TB, o Options) *Host {
	t.Helper()
	Require(t)
	if o.Logf == nil {
		o.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute) // a first run builds the image
	defer cancel()
	h, err := Start(ctx, o)
	if err != nil {
		t.Fatalf("realhost: %v", err)
	}
	h.t = t
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("realhost %s at failure:\n%s", h.Name, h.Diagnostics())
		}
		if err := h.Close(); err != nil {
			t.Errorf("realhost teardown of %s: %v", h.Name, err)
		}
	})
	return h
}

// Start boots a container; the caller must Close it. It sweeps what dead
// test processes left before taking a slot.
func Start(ctx context.Context, o Options) (_ *Host, err error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.BootTimeout == 0 {
		o.BootTimeout = 2 * time.Minute
	}
	if o.Copy == "" {
		o.Copy = Overlay
	}
	if o.Hostname != "" && !hostnameRE.MatchString(o.Hostname) {
		return nil, fmt.Errorf("Options.Hostname %q is not a hostname label (a-z, 0-9, '-', at most 63)", o.Hostname)
	}
	recipe, err := DefaultRecipe()
	if err != nil {
		return nil, err
	}
	img, releaseIm, err := defaultStore().acquire(ctx, recipe, o.Logf)
	if err != nil {
		return nil, err
	}
	h := &Host{image: img, releaseIm: releaseIm, opts: o, Port: 22, User: recipe.User, exited: make(chan struct{})}

	start := time.Now()
	unlock, err := globalLock(ctx)
	if err != nil {
		releaseIm()
		return nil, err
	}
	if err := sweepLocked(); err != nil {
		o.Logf("realhost: sweeping leftovers: %v", err)
	}
	st, _ := procStart(os.Getpid())
	h.slot, h.dir, err = allocate(record{Owner: os.Getpid(), OwnerStart: st, BootID: bootID(), Mode: string(o.Copy), Image: img.Dir, Created: time.Now().UTC()})
	if err == nil {
		err = raiseForward()
	}
	unlock()
	if err != nil {
		if h.dir != "" {
			_ = teardownSlot(h.slot, h.dir)
		}
		releaseIm()
		return nil, err
	}
	register(h)
	defer func() {
		if err != nil {
			if cerr := h.Close(); cerr != nil {
				err = fmt.Errorf("%w (and teardown: %v)", err, cerr)
			}
		}
	}()

	nm := slotNames(h.slot)
	h.Name = nm.Machine
	h.Subnet = slotNet(h.slot)
	h.Addr, h.HostAddr = guestAddr(h.Subnet).String(), hostAddr(h.Subnet).String()
	h.Hostname = o.Hostname
	if h.Hostname == "" {
		h.Hostname = "ip-" + strings.ReplaceAll(h.Addr, ".", "-")
	}
	if err := h.prepareRoot(); err != nil {
		return nil, err
	}
	if err := h.writeIdentity(); err != nil {
		return nil, err
	}
	if err := setupNet(nm, h.Subnet); err != nil {
		return nil, err
	}
	for _, d := range cgroupDirs(nm.Machine) {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("cgroup folder: %w", err)
		}
	}
	h.PrepTime = time.Since(start)

	bootStart := time.Now()
	h.mu.Lock()
	err = h.startNspawn()
	h.mu.Unlock()
	if err != nil {
		return nil, err
	}
	go h.supervise()
	bctx, cancel := context.WithTimeout(ctx, o.BootTimeout)
	defer cancel()
	if err := h.waitReady(bctx); err != nil {
		return nil, err
	}
	h.BootTime = time.Since(bootStart)
	o.Logf("realhost: %s (%s, %s) booted in %.2fs after %.2fs of preparation (%s)", h.Name, h.Hostname, h.Addr, h.BootTime.Seconds(), h.PrepTime.Seconds(), h.Mode)
	return h, nil
}

// Root is the container's root directory as this machine sees it.
func (h *Host) Root() string { return h.root }

// NetNS is the path of the container's network namespace.
func (h *Host) NetNS() string { return filepath.Join("/run/netns", h.Name) }

// Boots counts the boots so far (1 after Start).
func (h *Host) Boots() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.boots
}

func (h *Host) prepareRoot() error {
	h.root = filepath.Join(h.dir, "root")
	mode := h.opts.Copy
	if mode == Overlay {
		up, work := filepath.Join(h.dir, "upper"), filepath.Join(h.dir, "work")
		for _, d := range []string{up, work, h.root} {
			if err := os.Mkdir(d, 0o755); err != nil {
				return err
			}
		}
		opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", h.image.Root, up, work)
		if err := unix.Mount("overlay", h.root, "overlay", 0, opts); err == nil {
			h.Mode = Overlay
			return nil
		} else {
			h.opts.Logf("realhost: overlayfs on %s failed (%v); copying the root instead", h.root, err)
			os.Remove(h.root)
		}
	}
	out, err := exec.Command("cp", "-a", "--reflink=auto", h.image.Root, h.root).CombinedOutput()
	if err != nil {
		return fmt.Errorf("copying %s: %v: %s", h.image.Root, err, out)
	}
	h.Mode = Copy
	return nil
}

// writeIdentity gives the copy what makes it one machine: hostname, hosts,
// machine id, resolvers, its own SSH host key and the user's key.
func (h *Host) writeIdentity() error {
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	_, userPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	hostPEM, hostPubLine, hostSigner, err := keyFiles(hostPriv, "root@"+h.Hostname)
	if err != nil {
		return err
	}
	h.PrivateKey, h.PublicKey, h.signer, err = keyFiles(userPriv, "realhost-test")
	if err != nil {
		return err
	}
	h.hostPub = hostSigner.PublicKey()
	h.HostKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(h.hostPub)))

	ns, err := nameservers()
	if err != nil {
		return err
	}
	var resolv strings.Builder
	for _, n := range ns {
		resolv.WriteString("nameserver " + n + "\n")
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	uid, gid, home, err := passwdEntry(filepath.Join(h.root, "etc/passwd"), h.User)
	if err != nil {
		return err
	}
	files := []struct {
		rel      string
		data     string
		mode     os.FileMode
		uid, gid int
	}{
		{"etc/hostname", h.Hostname + "\n", 0o644, 0, 0},
		{"etc/hosts", "127.0.0.1 localhost\n127.0.1.1 " + h.Hostname + "\n::1 localhost ip6-localhost ip6-loopback\n", 0o644, 0, 0},
		{"etc/machine-id", hex.EncodeToString(id) + "\n", 0o444, 0, 0},
		{"etc/resolv.conf", resolv.String(), 0o644, 0, 0},
		{"etc/ssh/ssh_host_ed25519_key", string(hostPEM), 0o600, 0, 0},
		{"etc/ssh/ssh_host_ed25519_key.pub", hostPubLine + "\n", 0o644, 0, 0},
		{strings.TrimPrefix(home, "/") + "/.ssh/authorized_keys", h.PublicKey + "\n", 0o600, uid, gid},
	}
	for _, f := range files {
		if err := writeRootFile(filepath.Join(h.root, f.rel), []byte(f.data), f.mode, f.uid, f.gid); err != nil {
			return err
		}
	}
	h.KeyFile = filepath.Join(h.dir, "id_ed25519")
	h.KnownHosts = filepath.Join(h.dir, "known_hosts")
	if err := os.WriteFile(h.KeyFile, h.PrivateKey, 0o600); err != nil {
		return err
	}
	return os.WriteFile(h.KnownHosts, []byte(h.Addr+" "+h.HostKey+"\n"), 0o600)
}

func keyFiles(priv ed25519.PrivateKey, comment string) ([]byte, string, ssh.Signer, error) {
	blk, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, "", nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, "", nil, err
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))) + " " + comment
	return pem.EncodeToMemory(blk), pub, signer, nil
}

// writeRootFile replaces path (never following a symlink the image has
// there, such as a resolv.conf stub link).
func writeRootFile(path string, data []byte, mode os.FileMode, uid, gid int) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Chown(uid, gid)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func passwdEntry(passwd, user string) (uid, gid int, home string, err error) {
	b, err := os.ReadFile(passwd)
	if err != nil {
		return 0, 0, "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) >= 7 && f[0] == user {
			uid, _ = strconv.Atoi(f[2])
			gid, _ = strconv.Atoi(f[3])
			return uid, gid, f[5], nil
		}
	}
	return 0, 0, "", fmt.Errorf("no user %s in %s", user, passwd)
}

// startNspawn runs systemd-nspawn as PID-1 systemd in the slot's netns and
// cgroup folders. A shell moves itself into the folders, then execs nspawn.
// Called with h.mu held.
func (h *Host) startNspawn() error {
	log, err := os.OpenFile(filepath.Join(h.dir, "console.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	var move strings.Builder
	for _, d := range cgroupDirs(h.Name) {
		fmt.Fprintf(&move, "echo $$ > '%s/cgroup.procs' && ", d)
	}
	args := []string{"-c", move.String() + `exec "$@"`, "sh",
		"systemd-nspawn", "--boot", "--directory=" + h.root, "--machine=" + h.Name, "--hostname=" + h.Hostname,
		"--register=no", "--keep-unit", "--network-namespace-path=" + h.NetNS(),
		"--console=read-only", "--resolv-conf=off", "--timezone=off", "--link-journal=no",
	}
	cmd := exec.Command("/bin/sh", args...)
	cmd.Env = append(os.Environ(), "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1")
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group: a Ctrl-C reaches the test, whose handler tears
	// the container down, not nspawn halfway.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting systemd-nspawn: %w", err)
	}
	h.cur = cmd
	h.boots++
	return nil
}

// supervise boots the container again when it reboots (nspawn exits 133).
func (h *Host) supervise() {
	defer close(h.exited)
	for {
		h.mu.Lock()
		cmd := h.cur
		h.mu.Unlock()
		err := cmd.Wait()
		h.mu.Lock()
		if h.closing {
			h.mu.Unlock()
			return
		}
		if cmd.ProcessState != nil && cmd.ProcessState.ExitCode() == 133 {
			if serr := h.startNspawn(); serr != nil {
				h.exitErr = serr
				h.mu.Unlock()
				return
			}
			h.mu.Unlock()
			continue
		}
		h.exitErr = fmt.Errorf("systemd-nspawn exited: %v", err)
		h.mu.Unlock()
		return
	}
}

// InitPID is the container's PID 1 as this machine sees it (it changes
// with every boot).
func (h *Host) InitPID() (int, error) { return h.initPID() }

func (h *Host) initPID() (int, error) {
	h.mu.Lock()
	cmd := h.cur
	h.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return 0, errors.New("not running")
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", cmd.Process.Pid))
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, f := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(f)
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "systemd" {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("%s: systemd not running yet", h.Name)
}

// waitReady waits until sshd answers with the pinned host key and systemd
// has finished booting (running or degraded).
func (h *Host) waitReady(ctx context.Context) error {
	var last error
	for {
		select {
		case <-h.exited:
			return fmt.Errorf("%s stopped while booting: %v\nconsole:\n%s", h.Name, h.exitErr, h.ConsoleTail(40))
		default:
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s not ready: %v (last: %v)\nconsole:\n%s", h.Name, ctx.Err(), last, h.ConsoleTail(40))
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		r, err := h.SSH(cctx, "true")
		cancel()
		if err == nil && r.Code == 0 {
			break
		}
		last = err
		if err == nil {
			last = fmt.Errorf("ssh true: %s", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r, err := h.SSH(ctx, "systemctl is-system-running --wait")
	if err != nil {
		return fmt.Errorf("%s: systemctl is-system-running: %w", h.Name, err)
	}
	switch state := strings.TrimSpace(r.Stdout); state {
	case "running":
	case "degraded":
		failed, _ := h.SSH(ctx, "systemctl --failed --no-legend --plain")
		h.opts.Logf("realhost: %s booted degraded; failed units:\n%s", h.Name, failed.Stdout)
	default:
		return fmt.Errorf("%s: systemd is %q after boot\nconsole:\n%s", h.Name, state, h.ConsoleTail(40))
	}
	return nil
}

// Reboot reboots the container from inside and waits until it is running
// again and sshd answers.
func (h *Host) Reboot(ctx context.Context) error {
	before := h.Boots()
	h.dropClient()
	// systemctl may be killed by the shutdown (code -1): only a refusal counts.
	if r, err := h.Exec(ctx, "systemctl reboot"); err == nil && r.Code > 0 {
		return fmt.Errorf("%s: systemctl reboot: %s", h.Name, r)
	}
	for h.Boots() == before {
		select {
		case <-h.exited:
			return fmt.Errorf("%s did not come back: %v\nconsole:\n%s", h.Name, h.exitErr, h.ConsoleTail(40))
		case <-ctx.Done():
			return fmt.Errorf("%s reboot: %w\nconsole:\n%s", h.Name, ctx.Err(), h.ConsoleTail(40))
		case <-time.After(20 * time.Millisecond):
		}
	}
	h.dropClient()
	bctx, cancel := context.WithTimeout(ctx, h.opts.BootTimeout)
	defer cancel()
	return h.waitReady(bctx)
}

// Close stops the container and removes every host-side object it had;
// ip_forward is restored when it was the last container. Safe to call twice.
func (h *Host) Close() error {
	h.closeOnce.Do(func() { h.closeErr = h.close() })
	return h.closeErr
}

func (h *Host) close() error {
	var errs []error
	h.mu.Lock()
	h.closing = true
	cur := h.cur
	h.mu.Unlock()
	h.dropClient()
	if cur != nil && cur.Process != nil {
		// nspawn itself, in case its shell had not yet joined the cgroup.
		_ = cur.Process.Kill()
		select {
		case <-h.exited:
		case <-time.After(15 * time.Second):
		}
	}
	if h.dir != "" {
		errs = append(errs, teardownSlot(h.slot, h.dir))
	}
	if cur != nil {
		select {
		case <-h.exited:
		case <-time.After(15 * time.Second):
			errs = append(errs, fmt.Errorf("%s: systemd-nspawn did not exit", h.Name))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if unlock, err := globalLock(ctx); err != nil {
		errs = append(errs, err)
	} else {
		errs = append(errs, restoreForward())
		unlock()
	}
	if h.releaseIm != nil {
		h.releaseIm()
	}
	unregister(h)
	return errors.Join(errs...)
}

// ConsoleTail is the end of the container's console (boot messages).
func (h *Host) ConsoleTail(lines int) string {
	b, _ := os.ReadFile(filepath.Join(h.dir, "console.log"))
	return tail(string(bytes.ToValidUTF8(b, nil)), lines)
}

// Diagnostics is what a failing test wants to see: failed units and the
// journal's last lines.
func (h *Host) Diagnostics() string {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := h.Exec(ctx, "systemctl --failed --no-legend --plain; echo ---; journalctl --no-pager -n 60 -o short-precise")
	if err != nil {
		return "(no diagnostics: " + err.Error() + ")\nconsole:\n" + h.ConsoleTail(30)
	}
	return r.Stdout + r.Stderr
}
