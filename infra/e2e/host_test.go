package e2e

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	hostagente2e "github.com/agentkeys/agentkeys-infra/hostagent/e2e"
)

// hostAddr is the broker's public address (the mock EIP): sshd listens on it
// inside the host's own network namespace, so the declared connection
// (host:22) is dialed as is.
const hostAddr = "203.0.113.10"

// host is a broker host stand-in: Debian sshd in a private network and mount
// namespace whose /etc, /home, /usr/local/bin and /run are test copies, so
// the machine's own users, sudoers and files are never edited. The agent run
// through it converges Root (a sandbox), named by sshd's SetEnv.
type host struct {
	Dir     string // everything of this host
	Root    string // sandbox root the agent converges
	Etc     string // bound over /etc inside the namespace
	Home    string // bound over /home
	Bin     string // bound over /usr/local/bin
	User    string
	UserKey string // OpenSSH private key of User (PEM)
	HostKey string // authorized_keys form of sshd's host key
	NetNS   string // /proc/<sshd>/ns/net
	Log     *syncBuffer

	cmd *exec.Cmd
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) line(l string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.WriteString(l + "\n")
}

// Test user's ids: far from any id the copied /etc uses.
const testUID = 47001

func ed25519Key(t *testing.T, comment string) (string, ssh.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	must(t, err)
	blk, err := ssh.MarshalPrivateKey(priv, comment)
	must(t, err)
	sp, err := ssh.NewPublicKey(pub)
	must(t, err)
	return string(pem.EncodeToMemory(blk)), sp
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, p string, b string, mode os.FileMode) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, []byte(b), mode))
	must(t, os.Chmod(p, mode))
}

func appendLine(t *testing.T, p, line string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	defer f.Close()
	_, err = f.WriteString(line + "\n")
	must(t, err)
}

// startHost starts sshd for user and returns when it listens.
func startHost(t *testing.T, user string) *host {
	t.Helper()
	d := t.TempDir()
	h := &host{Dir: d, Root: filepath.Join(d, "sandbox"), Etc: filepath.Join(d, "etc"), Home: filepath.Join(d, "home"),
		Bin: filepath.Join(d, "usr-local-bin"), User: user, Log: &syncBuffer{}}
	for _, p := range []string{h.Root, h.Home, h.Bin, filepath.Join(d, "var-log-nginx")} {
		must(t, os.MkdirAll(p, 0o755))
	}
	// A copy of the machine's /etc: the account files and sudoers are edited
	// in the copy only (and /etc/agentkeys, absent on the machine, can exist).
	if out, err := exec.Command("cp", "-a", "/etc", h.Etc).CombinedOutput(); err != nil {
		t.Fatalf("copy /etc: %v: %s", err, out)
	}
	appendLine(t, filepath.Join(h.Etc, "passwd"), fmt.Sprintf("%s:x:%d:%d:agentkeys ssh e2e:/home/%s:/bin/bash", user, testUID, testUID, user))
	appendLine(t, filepath.Join(h.Etc, "group"), fmt.Sprintf("%s:x:%d:", user, testUID))
	appendLine(t, filepath.Join(h.Etc, "shadow"), user+":*:19000:0:99999:7:::")
	// Sudoers as on an Ubuntu EC2 image (env_reset, secure_path) plus the
	// user's passwordless rule; only this file lets the sandbox root through.
	must(t, os.RemoveAll(filepath.Join(h.Etc, "sudoers.d")))
	must(t, os.Mkdir(filepath.Join(h.Etc, "sudoers.d"), 0o755))
	write(t, filepath.Join(h.Etc, "sudoers"), strings.Join([]string{
		"Defaults env_reset",
		`Defaults secure_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"`,
		`Defaults env_keep += "AGENTKEYS_HOSTAGENT_ROOT"`,
		"root ALL=(ALL:ALL) ALL",
		user + " ALL=(root) NOPASSWD: ALL",
		"",
	}, "\n"), 0o440)
	must(t, os.MkdirAll(filepath.Join(h.Etc, "agentkeys"), 0o755))

	home := filepath.Join(h.Home, user)
	userKey, userPub := ed25519Key(t, user+"@e2e")
	h.UserKey = userKey
	write(t, filepath.Join(home, ".ssh", "authorized_keys"), string(ssh.MarshalAuthorizedKey(userPub)), 0o600)
	for _, p := range []string{home, filepath.Join(home, ".ssh"), filepath.Join(home, ".ssh", "authorized_keys")} {
		must(t, os.Chown(p, testUID, testUID))
	}
	must(t, os.Chmod(home, 0o750))

	hostKey, hostPub := ed25519Key(t, "host@e2e")
	keyFile := filepath.Join(d, "ssh", "ssh_host_ed25519_key")
	write(t, keyFile, hostKey, 0o600)
	h.HostKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostPub)))
	conf := filepath.Join(d, "ssh", "sshd_config")
	write(t, conf, strings.Join([]string{
		"ListenAddress " + hostAddr + ":22",
		"HostKey " + keyFile,
		"PidFile none",
		"UsePAM no",
		"StrictModes no",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes",
		"AuthorizedKeysFile .ssh/authorized_keys",
		"PermitRootLogin no",
		"AllowUsers " + user,
		"SetEnv " + hostagentRootEnv + "=" + h.Root,
		"Subsystem sftp internal-sftp",
		"LogLevel VERBOSE",
		"",
	}, "\n"), 0o600)

	// The sandbox's nginx (real, as in the host agent's e2e tests).
	_, err := hostagente2e.WriteNginxConf(h.Root)
	must(t, err)

	script := strings.Join([]string{
		"set -e",
		"ip link set lo up",
		"ip addr add " + hostAddr + "/32 dev lo",
		"mount --bind " + h.Etc + " /etc",
		"mount --bind " + h.Home + " /home",
		"mount --bind " + h.Bin + " /usr/local/bin",
		"mount -t tmpfs -o mode=0755 tmpfs /run",
		"mkdir -p /run/sshd",
		"if [ -d /var/log/nginx ]; then mount --bind " + filepath.Join(d, "var-log-nginx") + " /var/log/nginx; fi",
		"exec /usr/sbin/sshd -D -e -f " + conf,
	}, "\n")
	cmd := exec.Command("unshare", "--net", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script)
	// No Pdeathsig: it fires when the forking OS thread exits, and InNetns
	// discards locked threads, which killed sshd mid-test.
	stderr, err := cmd.StderrPipe()
	must(t, err)
	cmd.Stdout = cmd.Stderr
	must(t, cmd.Start())
	h.cmd = cmd
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			h.Log.line(sc.Text())
			if strings.Contains(sc.Text(), "Server listening on "+hostAddr) {
				once.Do(func() { close(ready) })
			}
		}
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { h.stop(t, done) })
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("sshd exited before listening: %v\n%s", err, h.Log.String())
	case <-time.After(15 * time.Second):
		t.Fatalf("sshd did not listen within 15s:\n%s", h.Log.String())
	}
	h.NetNS = fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)
	if sameNetns(h.NetNS) {
		t.Fatal("sshd runs in the test's own network namespace")
	}
	return h
}

// stop kills sshd, then every sandbox service and the sandbox nginx (they
// run in sshd's namespaces, detached from it).
func (h *host) stop(t *testing.T, done chan error) {
	h.cmd.Process.Kill()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Errorf("sshd (pid %d) did not exit", h.cmd.Process.Pid)
	}
	agent.NewSandbox(h.Root).StopAll()
	if t.Failed() {
		t.Logf("sshd log:\n%s", h.Log.String())
		logs, _ := filepath.Glob(filepath.Join(h.Root, "var/log/sandbox/*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			t.Logf("%s:\n%s", filepath.Base(l), tail(string(b), 2000))
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func marshalAuthorized(k ssh.PublicKey) []byte { return ssh.MarshalAuthorizedKey(k) }

// assertOwnerMode checks a file's owner and (unless mode < 0) permissions.
func assertOwnerMode(t *testing.T, p string, uid int, mode int) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Errorf("%s: %v", p, err)
		return
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != uid {
		t.Errorf("%s: owner uid %d, want %d", p, st.Uid, uid)
	}
	if mode >= 0 && fi.Mode().Perm() != os.FileMode(mode) {
		t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), os.FileMode(mode))
	}
}
