package realhost_test

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/internal/sandboxtest"
	"github.com/agentkeys/agentkeys-infra/internal/testkit/agentkeysws"
)

// scriptUnits are every unit setup-broker-host.sh writes, the /bin/sh -c
// wrapped cap workers included (real systemd runs those).
var scriptUnits = append(append([]string{}, sandboxtest.ScriptUnits...),
	"agentkeys-worker-creds.service", "agentkeys-worker-memory.service", "agentkeys-worker-config.service")

// writeScriptHost prepares the container the way setup-broker-host.sh
// leaves a host: its users, checkout under /home/ubuntu, binaries, env
// files with the master secret and KEKs, keypairs, units (the cap workers
// wrapped in /bin/sh -c) and Phase A sites enabled by absolute links,
// nginx installed and serving them, every unit running under real systemd.
func (st *stack) writeScriptHost() *sandboxtest.ScriptHost {
	t := st.t
	t.Helper()
	st.root("apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx >/dev/null")
	st.root("useradd --system --user-group --home-dir /var/lib/agentkeys --shell /usr/sbin/nologin agentkeys && " +
		"useradd --user-group --create-home --shell /bin/bash agentkey")
	sh := sandboxtest.WriteScriptHost(t, st.Root(), st.spec, agentkeysws.StandinBinary(t))
	// The script's checkout, where the old scripts built (adopted by the source step).
	co := filepath.Join(st.Root(), "home/ubuntu/agentKeys")
	if out, err := exec.Command("git", "clone", "-q", st.bare, co).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v %s", err, out)
	}
	sandboxtest.Git(t, co, "remote", "set-url", "origin", RepoPath)
	st.root("chown -R ubuntu:ubuntu /home/ubuntu/agentKeys && chown -R agentkeys:agentkeys /var/lib/agentkeys")
	st.root("systemctl restart nginx")
	st.root("systemctl daemon-reload && systemctl enable --now " + strings.Join(scriptUnits, " "))
	// The wrapped workers read the public key the broker exports at boot;
	// a worker that raced it is restarted by systemd 5 s later.
	deadline := time.Now().Add(60 * time.Second)
	for {
		var down []string
		for _, u := range append([]string{"nginx.service"}, scriptUnits...) {
			if strings.TrimSpace(st.try("systemctl is-active "+u).Stdout) != "active" {
				down = append(down, u)
			}
		}
		if len(down) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, u := range down {
				t.Errorf("the script's %s is %s:\n%s", u, st.unitState(u), st.Journal(u))
			}
			t.FailNow()
		}
		time.Sleep(500 * time.Millisecond)
	}
	return sh
}

// listener is one listening TCP socket: its port and the pids holding it.
type listener struct {
	port int
	pids []string
}

var ssUsers = regexp.MustCompile(`pid=(\d+)`)

// listeners parses ss -ltnpH in the container.
func (st *stack) listeners() []listener {
	var out []listener
	for _, l := range strings.Split(strings.TrimSpace(st.root("ss -ltnpH")), "\n") {
		f := strings.Fields(l)
		if len(f) < 4 {
			continue
		}
		local := f[3]
		port, err := strconv.Atoi(local[strings.LastIndexByte(local, ':')+1:])
		if err != nil {
			continue
		}
		var pids []string
		for _, m := range ssUsers.FindAllStringSubmatch(l, -1) {
			pids = append(pids, m[1])
		}
		out = append(out, listener{port: port, pids: pids})
	}
	return out
}

// A host the setup script built, running under real systemd, is taken over
// by a full apply: every secret is kept byte for byte, the script's units
// are replaced (their processes gone), each service port has exactly one
// listener, the agent's unit's process, and every service answers its
// health path through nginx over TLS.
func TestTakeoverOfAScriptBuiltHost(t *testing.T) {
	t.Parallel()
	st := newStack(t, stackOptions{certs: true, cargo: true})
	s := st.spec
	sh := st.writeScriptHost()
	old := map[string]string{}
	for _, u := range scriptUnits {
		old[u] = strings.TrimSpace(st.root("systemctl show -P MainPID " + u))
	}

	res := st.applyOK(s)
	if !strings.Contains(strings.Join(res.step(t, "source").Changes, "\n"), "adopted /home/ubuntu/agentKeys") {
		t.Errorf("the script's checkout was not adopted: %+v", res.step(t, "source"))
	}
	after := st.secretSums()
	changed := diffSums(sh.Secrets, after)
	figure("realhost_takeover_secrets_changed", len(changed))
	if len(changed) > 0 || len(sh.Secrets) != 6 {
		t.Errorf("secrets changed by the takeover: %v (of %d: %v)", changed, len(sh.Secrets), sh.Secrets)
	}

	st.requireActive(st.expectedUnits()...)
	for _, u := range scriptUnits {
		if b := st.root("cat /etc/systemd/system/" + u); !strings.Contains(b, agent.ManagedMarker) {
			t.Errorf("%s is still the script's:\n%s", u, b)
		}
		if pid := strings.TrimSpace(st.root("systemctl show -P MainPID " + u)); pid == old[u] {
			t.Errorf("%s still runs the script's process %s", u, pid)
		}
		if st.try("test -e /proc/"+old[u]).Code == 0 {
			t.Errorf("the script's %s process %s is still alive", u, old[u])
		}
	}
	if b := st.root("cat /etc/systemd/system/agentkeys-worker-creds.service"); strings.Contains(b, "/bin/sh -c") {
		t.Errorf("the cap worker still runs through the script's /bin/sh wrapper:\n%s", b)
	}

	// Each service port: exactly one listener, the agent's unit's process.
	byPort := map[int][]listener{}
	for _, l := range st.listeners() {
		byPort[l.port] = append(byPort[l.port], l)
	}
	for _, svc := range s.Services {
		ls := byPort[svc.Port]
		main := strings.TrimSpace(st.root("systemctl show -P MainPID " + svc.Unit))
		if len(ls) != 1 || len(ls[0].pids) != 1 || ls[0].pids[0] != main {
			t.Errorf("port %d (%s): listeners %+v, want exactly one, %s's process %s", svc.Port, svc.Name, ls, svc.Unit, main)
		}
	}
	for _, p := range []int{80, 443} {
		var pids []string
		for _, l := range byPort[p] {
			pids = append(pids, l.pids...)
		}
		sort.Strings(pids)
		master := strings.TrimSpace(st.root("systemctl show -P MainPID nginx"))
		if len(pids) == 0 || !allNginx(st, pids, master) {
			t.Errorf("port %d is held by %v, want nginx (master %s) only", p, pids, master)
		}
	}
	st.requireServed()
	requireNoop(t, "apply after the takeover", st.applyOK(s))
}

// allNginx reports whether every pid is nginx's master or one of its workers.
func allNginx(st *stack, pids []string, master string) bool {
	for _, p := range pids {
		if p == master {
			continue
		}
		ppid := strings.TrimSpace(st.root(fmt.Sprintf("ps -o ppid= -p %s || true", p)))
		if ppid != master {
			return false
		}
	}
	return true
}
