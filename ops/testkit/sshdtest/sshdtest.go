// Package sshdtest runs a real OpenSSH server (Debian openssh-server) on a
// loopback port with a throwaway host key and a test-owned authorized_keys
// file, so ssh code paths are exercised end to end without touching /etc.
package sshdtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/agentkeys/agentkeys-infra/internal/testkit/mototest"
)

// Server is a running sshd.
type Server struct {
	Port           int
	AuthorizedKeys string // append keys here to let them log in
	KnownHosts     string // a known_hosts file pinning the host key for 127.0.0.1
	Log            string
}

// Start runs sshd -D until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	mototest.Require(t, "ssh", "apt-get install -y openssh-client")
	bin := "/usr/sbin/sshd"
	if _, err := os.Stat(bin); err != nil {
		bin = mototest.Require(t, "sshd", "apt-get install -y openssh-server")
	}
	if os.Geteuid() == 0 {
		// Privilege separation needs its empty chroot dir (systemd's RuntimeDirectory=sshd).
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("sshd needs /run/sshd: %v", err)
		}
	}
	dir := t.TempDir()
	_, hk, _ := ed25519.GenerateKey(rand.Reader)
	block, _ := ssh.MarshalPrivateKey(hk, "")
	hostKey := filepath.Join(dir, "host_ed25519")
	if err := os.WriteFile(hostKey, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, _ := ssh.NewSignerFromKey(hk)
	s := &Server{Port: mototest.FreePort(t), AuthorizedKeys: filepath.Join(dir, "authorized_keys"), Log: filepath.Join(dir, "sshd.log")}
	if err := os.WriteFile(s.AuthorizedKeys, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s.KnownHosts = filepath.Join(dir, "known_hosts")
	line := knownHostsLine(s.Port, signer.PublicKey())
	if err := os.WriteFile(s.KnownHosts, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile %s
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
LogLevel VERBOSE
`, s.Port, hostKey, filepath.Join(dir, "sshd.pid"), s.AuthorizedKeys)
	cfgFile := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-t", "-f", cfgFile).CombinedOutput(); err != nil {
		t.Fatalf("sshd -t: %v\n%s", err, out)
	}
	logf, _ := os.Create(s.Log)
	cmd := exec.Command(bin, "-D", "-e", "-f", cfgFile)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(s.Port))
		if err == nil {
			c.Close()
			return s
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(s.Log)
			t.Fatalf("sshd did not listen within 10s: %s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func knownHostsLine(port int, k ssh.PublicKey) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "[127.0.0.1]:%d %s", port, ssh.MarshalAuthorizedKey(k))
	return b.String()
}

// Authorize appends an authorized_keys line.
func (s *Server) Authorize(t testing.TB, line string) {
	t.Helper()
	f, err := os.OpenFile(s.AuthorizedKeys, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line + "\n"); err != nil {
		t.Fatal(err)
	}
}

// ClientOptions are the ssh -o options that pin the host key and never prompt.
func (s *Server) ClientOptions() []string {
	return []string{"UserKnownHostsFile=" + s.KnownHosts, "StrictHostKeyChecking=yes", "BatchMode=yes", "ConnectTimeout=10"}
}
