// Package sshdtest runs a real OpenSSH server (Debian openssh-server) on a
// loopback port with a throwaway host key and a test-owned authorized_keys
// file, so ssh code paths are exercised end to end without touching /etc.
package sshdtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
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
	s := &Server{AuthorizedKeys: filepath.Join(dir, "authorized_keys"), Log: filepath.Join(dir, "sshd.log")}
	if err := os.WriteFile(s.AuthorizedKeys, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s.KnownHosts = filepath.Join(dir, "known_hosts")
	// A free port can be taken by another test before sshd binds it; then
	// sshd exits or a foreign server answers, and we try another port.
	for attempt := 1; ; attempt++ {
		err := s.launch(t, bin, dir, hostKey, signer.PublicKey())
		if err == nil {
			return s
		}
		if attempt == 5 {
			b, _ := os.ReadFile(s.Log)
			t.Fatalf("sshd: %v\n%s", err, b)
		}
	}
}

// launch starts sshd on a fresh free port and waits until it answers with
// our host key.
func (s *Server) launch(t testing.TB, bin, dir, hostKey string, pub ssh.PublicKey) error {
	t.Helper()
	s.Port = mototest.FreePort(t)
	if err := os.WriteFile(s.KnownHosts, []byte(knownHostsLine(s.Port, pub)), 0o600); err != nil {
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
	logf, err := os.Create(s.Log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-D", "-e", "-f", cfgFile)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
		logf.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			logf.Close()
			return fmt.Errorf("sshd on port %d exited before it listened", s.Port)
		default:
		}
		switch answersWith(s.Port, pub) {
		case nil:
			t.Cleanup(stop)
			return nil
		case errForeign:
			stop()
			return fmt.Errorf("port %d is served by another ssh server", s.Port)
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("sshd did not listen on port %d within 10s", s.Port)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var errForeign = errors.New("foreign host key")

// answersWith reports nil when the server on port presents pub, errForeign
// when it presents another key, and another error when nothing answers yet.
func answersWith(port int, pub ssh.PublicKey) error {
	seen := errors.New("no handshake")
	cfg := &ssh.ClientConfig{User: "probe", Timeout: 2 * time.Second,
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error {
			if bytes.Equal(k.Marshal(), pub.Marshal()) {
				seen = nil
			} else {
				seen = errForeign
			}
			return seen
		}}
	if c, err := ssh.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port), cfg); err == nil {
		c.Close()
	}
	return seen
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
