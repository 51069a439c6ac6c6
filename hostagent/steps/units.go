package steps

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
)

// Units writes each service's env file and hardened systemd unit, reloads
// systemd if a unit changed, retires units this agent managed that the spec
// no longer has, enables and starts every unit, and restarts only the units
// whose binary, unit or env files changed since their last (re)start,
// tracked by content hashes in <agent dir>/units.json (written after the
// restarts). A file the agent did not write (the old scripts' units and env
// files) is backed up before it is replaced. Before a unit or env file
// changes, the daemon-reload and restarts it calls for are recorded in the
// intent journal, and each is removed once done: a run killed in between
// leaves them owed to the next run.
type Units struct {
	// Extra returns additional unit files by name (the certificate renew
	// timer and its service): written, enabled and, for timers, started;
	// never restarted.
	Extra func(env *agent.Env) map[string]string
}

func (Units) Name() string { return "units" }

func header(s *spec.HostSpec) string {
	return fmt.Sprintf("%s (stack %s); edits are overwritten.", agent.ManagedMarker, s.Stack)
}

// MintedOnApply stands for a secret a plan would mint.
const MintedOnApply = "(minted on apply)"

// EnvFile renders a service's managed env file: its variables and the
// current values of its secrets (secrets maps a secret id to its value).
func EnvFile(s *spec.HostSpec, svc *spec.Service, secrets map[string]string) ([]byte, error) {
	m := map[string]string{}
	for k, v := range svc.Env {
		m[k] = v
	}
	for _, id := range svc.Secrets {
		sec, _ := s.Secret(id)
		v, ok := secrets[id]
		if !ok {
			if sec.Kind == string(contract.CarriedOver) {
				continue // nothing to carry over on this host
			}
			return nil, fmt.Errorf("%s needs secret %s (%s in %s), which is not on the host; run the secrets step", svc.Unit, id, sec.Var, sec.File)
		}
		m[sec.Var] = v
	}
	return agent.RenderEnv(header(s), m), nil
}

// UnitFile renders a service's hardened systemd unit.
func UnitFile(s *spec.HostSpec, svc *spec.Service) []byte {
	var b strings.Builder
	w := func(f string, a ...any) { fmt.Fprintf(&b, f+"\n", a...) }
	w("# %s", header(s))
	w("[Unit]")
	w("Description=AgentKeys %s (%s)", svc.Name, svc.Package)
	w("After=%s", strings.Join(append([]string{"network-online.target"}, svc.After...), " "))
	w("Wants=%s", strings.Join(append([]string{"network-online.target"}, svc.After...), " "))
	// A crash-looping unit reaches "failed" after 5 starts in 2 minutes
	// (with RestartSec=5s the default 10 s window never fills).
	w("StartLimitIntervalSec=120")
	w("StartLimitBurst=5")
	w("")
	w("[Service]")
	w("Type=simple")
	w("User=%s", s.ServiceUser)
	w("Group=%s", s.ServiceUser)
	if svc.EnvFile != "" {
		w("EnvironmentFile=%s", svc.EnvFile)
	} else {
		keys := make([]string, 0, len(svc.Env))
		for k := range svc.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			w("Environment=%s=%s", k, svc.Env[k])
		}
	}
	for _, f := range svc.EnvFiles {
		w("EnvironmentFile=%s", f)
	}
	w("ExecStart=%s", strings.Join(append([]string{svc.Install}, svc.Args...), " "))
	if waitedOn(s, svc.Unit) {
		// Type=simple is "started" at exec, so After= alone would start the
		// units ordered after this one while it is still booting (the
		// broker rewrites the session public key the signer reads at each
		// boot: a signer started with it read an empty file). The start
		// job, which they wait for, ends only once it serves its health path.
		// --pid: a port held by another process answers too.
		w("ExecStartPost=%s %s http://%s:%d%s --pid=${MAINPID}", spec.AgentPath, WaitReadyCommand, contract.Loopback, svc.Port, svc.Health)
	}
	w("Restart=%s", svc.Restart)
	w("RestartSec=5s")
	// The broker keeps serving BROKER_SHUTDOWN_GRACE_SECONDS (30) after
	// SIGTERM, then drains.
	w("TimeoutStopSec=90")
	if len(svc.WritePaths) > 0 {
		w("ReadWritePaths=%s", strings.Join(svc.WritePaths, " "))
	}
	if svc.BindAll {
		// It listens on 0.0.0.0 with no flag to narrow it; only loopback
		// may reach it.
		w("IPAddressDeny=any")
		w("IPAddressAllow=localhost")
	}
	w("UMask=0077")
	w("NoNewPrivileges=yes")
	w("ProtectSystem=strict")
	w("ProtectHome=yes")
	w("PrivateTmp=yes")
	w("PrivateDevices=yes")
	w("ProtectKernelTunables=yes")
	w("ProtectKernelModules=yes")
	w("ProtectKernelLogs=yes")
	w("ProtectControlGroups=yes")
	w("ProtectClock=yes")
	w("ProtectHostname=yes")
	w("ProtectProc=invisible")
	w("ProcSubset=pid")
	w("RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX")
	w("RestrictNamespaces=yes")
	w("RestrictRealtime=yes")
	w("RestrictSUIDSGID=yes")
	w("LockPersonality=yes")
	w("MemoryDenyWriteExecute=yes")
	w("RemoveIPC=yes")
	w("DevicePolicy=closed")
	w("KeyringMode=private")
	w("CapabilityBoundingSet=")
	w("AmbientCapabilities=")
	w("SystemCallArchitectures=native")
	w("SystemCallFilter=@system-service")
	w("SystemCallFilter=~@privileged @resources")
	w("SystemCallErrorNumber=EPERM")
	w("")
	w("[Install]")
	w("WantedBy=multi-user.target")
	return []byte(b.String())
}

// WaitReadyCommand is the agent's subcommand a unit's ExecStartPost runs
// to wait until the service answers its health path (at most 80 s, within
// systemd's 90 s start timeout).
const WaitReadyCommand = "wait-ready"

// waitedOn reports whether another service is ordered after unit.
func waitedOn(s *spec.HostSpec, unit string) bool {
	for _, o := range s.Services {
		if slices.Contains(o.After, unit) {
			return true
		}
	}
	return false
}

type unitState struct {
	Unit   string `json:"unit"`
	Env    string `json:"env"`
	Binary string `json:"binary"`
}

// unitsStatePath is the record of each managed unit's last (re)start inputs.
func unitsStatePath(s *spec.HostSpec) string {
	return path.Join(agent.AgentDir(s.StateDir), "units.json")
}

// legacyUnitsStatePath is where earlier agents kept it (units they started
// under other names are retired from it).
func legacyUnitsStatePath(s *spec.HostSpec) string { return path.Join(s.StateDir, "units.state") }

func readUnitsState(env *agent.Env) map[string]unitState {
	have := map[string]unitState{}
	for _, p := range []string{legacyUnitsStatePath(env.Spec), unitsStatePath(env.Spec)} {
		m := map[string]unitState{}
		if found, err := fsx.ReadJSON(env.Root, p, &m); found && err == nil {
			for k, v := range m {
				have[k] = v
			}
		}
	}
	return have
}

// envHash hashes every environment source of a unit, so a change to any of
// them restarts it.
func envHash(env *agent.Env, managed []byte, svc *spec.Service) string {
	var b strings.Builder
	b.Write(managed)
	for _, f := range svc.EnvFiles {
		c, err := os.ReadFile(env.Path(f))
		if err != nil {
			fmt.Fprintf(&b, "\x00missing %s", f)
			continue
		}
		fmt.Fprintf(&b, "\x00%s\x00", f)
		b.Write(c)
	}
	return sha([]byte(b.String()))
}

func (u Units) Run(ctx context.Context, env *agent.Env) (agent.Result, error) {
	res := agent.Result{Step: "units"}
	s := env.Spec
	root := mustRoot(env)
	secrets, err := SecretValues(env)
	if err != nil {
		return res, err
	}
	if env.DryRun {
		// A plan on a fresh host: the secrets step would mint them first.
		for _, sec := range s.Secrets {
			if _, ok := secrets[sec.ID]; !ok && sec.Kind == string(contract.Minted) {
				secrets[sec.ID] = MintedOnApply
			}
		}
	}

	pending, err := env.Pending()
	if err != nil {
		return res, err
	}
	owed := map[string]bool{}
	for _, a := range pending {
		owed[a] = true
	}

	type file struct {
		path string
		data []byte
		mode os.FileMode
		unit string // the service unit that reads it ("" for extra units)
		def  bool   // a unit definition (needs daemon-reload)
	}
	var files []file
	want := map[string]unitState{}
	for i := range s.Services {
		svc := &s.Services[i]
		ub := UnitFile(s, svc)
		files = append(files, file{path: contract.UnitPath(svc.Unit), data: ub, mode: 0o644, unit: svc.Unit, def: true})
		var eb []byte
		if svc.EnvFile != "" {
			if eb, err = EnvFile(s, svc, secrets); err != nil {
				return res, err
			}
			mode := os.FileMode(0o644)
			if len(svc.Secrets) > 0 {
				mode = 0o600 // read by systemd as root before it drops privileges
			}
			files = append(files, file{path: svc.EnvFile, data: eb, mode: mode, unit: svc.Unit})
		}
		bh := ""
		if b, err := os.ReadFile(env.Path(svc.Install)); err == nil {
			bh = sha(b)
		}
		want[svc.Unit] = unitState{Unit: sha(ub), Env: envHash(env, eb, svc), Binary: bh}
	}
	var extra []string
	if u.Extra != nil {
		ex := u.Extra(env)
		names := make([]string, 0, len(ex))
		for name := range ex {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			files = append(files, file{path: contract.UnitPath(name), data: []byte(ex[name]), mode: 0o644, def: true})
			if strings.HasSuffix(name, ".timer") {
				extra = append(extra, name)
			}
		}
	}
	have := readUnitsState(env)
	// Units an earlier run managed that the spec no longer has.
	var retire []string
	for name := range have {
		if _, ok := want[name]; !ok && strings.HasPrefix(name, "agentkeys-") && strings.HasSuffix(name, ".service") {
			retire = append(retire, name)
		}
	}
	sort.Strings(retire)

	// Record what the changes will call for, then make them.
	var intents []string
	for _, f := range files {
		d, err := env.Differs(f.path, f.data, f.mode, root)
		if err != nil {
			return res, err
		}
		if !d {
			continue
		}
		if f.def {
			intents = append(intents, agent.ActionDaemonReload)
		}
		if f.unit != "" {
			intents = append(intents, agent.ActionRestart(f.unit))
		}
	}
	for _, name := range retire {
		if env.Exists(contract.UnitPath(name)) {
			intents = append(intents, agent.ActionDaemonReload)
		}
	}
	if err := env.Intend(intents...); err != nil {
		return res, err
	}
	for _, a := range intents {
		owed[a] = true
	}
	for _, f := range files {
		if _, err := env.WriteManaged(&res, f.path, f.data, f.mode, root); err != nil {
			return res, err
		}
	}
	fsx.Fault("units:before-daemon-reload")

	// Retire first, so no port is held twice when the new units start.
	for _, name := range retire {
		if env.DryRun {
			res.Changes = append(res.Changes, "would stop, disable and remove "+name+" (no longer in the spec)")
			continue
		}
		if err := env.Sys.Systemctl(ctx, "disable", "--now", name); err != nil {
			return res, fmt.Errorf("retire %s: %w", name, err)
		}
		if _, err := env.Backup(&res, contract.UnitPath(name), false); err != nil {
			return res, err
		}
		if _, err := fsx.RemoveFile(env.Root, contract.UnitPath(name)); err != nil {
			return res, err
		}
		res.Changes = append(res.Changes, "retired "+name+" (stopped, disabled, removed: no longer in the spec)")
		delete(have, name)
	}
	if owed[agent.ActionDaemonReload] {
		if env.DryRun {
			res.Changes = append(res.Changes, "would systemctl daemon-reload")
		} else {
			if err := env.DaemonReload(ctx); err != nil {
				return res, err
			}
			if err := env.Done(agent.ActionDaemonReload); err != nil {
				return res, err
			}
			res.Changes = append(res.Changes, "systemctl daemon-reload")
		}
	}
	// Restarts owed for units no longer in the spec are dropped: the agent
	// does not manage them any more.
	var gone []string
	for a := range owed {
		if unit, ok := agent.RestartOf(a); ok {
			if _, managed := want[unit]; !managed {
				gone = append(gone, a)
			}
		}
	}
	sort.Strings(gone)
	if err := env.Done(gone...); err != nil {
		return res, err
	}
	detail := map[string]string{}
	for _, t := range extra {
		enabled, err := env.Sys.IsEnabled(ctx, t)
		if err != nil {
			return res, err
		}
		active, err := env.Sys.IsActive(ctx, t)
		if err != nil {
			return res, err
		}
		for _, step := range []struct {
			verb, done string
			need       bool
		}{{"enable", "enabled", !enabled}, {"start", "started", !active}} {
			if !step.need {
				continue
			}
			if env.DryRun {
				res.Changes = append(res.Changes, "would "+step.verb+" "+t)
				continue
			}
			if err := env.Sys.Systemctl(ctx, step.verb, t); err != nil {
				return res, err
			}
			res.Changes = append(res.Changes, step.done+" "+t)
		}
	}
	// Start in the spec's order (the broker before the services ordered
	// after it). A unit whose binary is not installed (the build step was
	// left out) is not started: its files are in place for inspection.
	var notStarted, failed []string
	// Whether each unit ran before this loop: starting one unit starts the
	// units its Wants= names, on the definitions just written, and those
	// must not be restarted for changes they already run with.
	wasActive := map[string]bool{}
	for i := range s.Services {
		u := s.Services[i].Unit
		if wasActive[u], err = env.Sys.IsActive(ctx, u); err != nil {
			return res, err
		}
	}
	for i := range s.Services {
		u := s.Services[i].Unit
		if !env.DryRun && !env.Exists(s.Services[i].Install) {
			notStarted = append(notStarted, u)
			detail[u] = "not started: " + s.Services[i].Install + " is not installed (run the build step)"
			continue
		}
		enabled, err := env.Sys.IsEnabled(ctx, u)
		if err != nil {
			return res, err
		}
		active, err := env.Sys.IsActive(ctx, u)
		if err != nil {
			return res, err
		}
		restart := agent.ActionRestart(u)
		stale := have[u] != want[u] || owed[restart]
		if env.DryRun {
			if !enabled {
				res.Changes = append(res.Changes, "would enable "+u)
			}
			if !active {
				res.Changes = append(res.Changes, "would start "+u)
			} else if stale {
				res.Changes = append(res.Changes, "would restart "+u)
			}
			continue
		}
		if !enabled {
			if err := env.Sys.Systemctl(ctx, "enable", u); err != nil {
				return res, err
			}
			res.Changes = append(res.Changes, "enabled "+u)
		}
		fsx.Fault("units:before-restart")
		switch {
		case !active:
			if err := env.Sys.Systemctl(ctx, "start", u); err != nil {
				failed = append(failed, unitFailure(ctx, env, u, "start", err))
				detail[u] = "failed to start"
				continue
			}
			res.Changes = append(res.Changes, "started "+u)
			detail[u] = "started"
		case !wasActive[u]:
			res.Changes = append(res.Changes, "started "+u+" (with a unit that wants it)")
			detail[u] = "started"
		case stale:
			if err := env.Restart(ctx, u); err != nil {
				// The restart stays owed: the next run tries again.
				failed = append(failed, unitFailure(ctx, env, u, "restart", err))
				detail[u] = "failed to restart"
				continue
			}
			w := why(have[u], want[u])
			if w == "" {
				w = "owed by an interrupted run"
			} else {
				w += " changed"
			}
			res.Changes = append(res.Changes, "restarted "+u+" ("+w+")")
			detail[u] = "restarted"
		default:
			detail[u] = "active"
		}
		if err := env.Done(restart); err != nil {
			return res, err
		}
	}
	res.Detail = map[string]any{"units": detail}
	if other := unmanaged(env, want); len(other) > 0 {
		res.Detail["unmanaged"] = other
	}
	if len(notStarted) > 0 {
		res.Reason = fmt.Sprintf("%d units not started: their binaries are not installed (run the build step): %s", len(notStarted), strings.Join(notStarted, ", "))
	}
	if env.DryRun {
		return res, nil
	}
	if _, err := env.EnsureDir(nil, agent.AgentDir(s.StateDir), 0o700, root); err != nil {
		return res, err
	}
	sb, _ := json.MarshalIndent(want, "", "  ")
	if _, err := env.WriteFile(&res, unitsStatePath(s), append(sb, '\n'), 0o600, root); err != nil {
		return res, err
	}
	if env.Exists(legacyUnitsStatePath(s)) {
		if _, err := fsx.RemoveFile(env.Root, legacyUnitsStatePath(s)); err != nil {
			return res, err
		}
	}
	if len(failed) > 0 {
		return res, fmt.Errorf("%d units failed to start (the others were started):\n%s", len(failed), strings.Join(failed, "\n"))
	}
	return res, nil
}

// unitFailure describes a unit systemd could not start: the error, its
// state and its last journal lines (why it exited).
func unitFailure(ctx context.Context, env *agent.Env, unit, verb string, err error) string {
	msg := fmt.Sprintf("%s: systemctl %s: %v", unit, verb, err)
	if st, serr := env.Sys.UnitStatus(ctx, unit); serr == nil && st.ActiveState != "" {
		msg += "; it is " + st.String()
	}
	if j, jerr := env.Sys.JournalTail(ctx, unit, JournalLines); jerr == nil && j != "" {
		msg += "; last journal lines:\n" + j
	}
	return msg
}

// UnmanagedUnits are units the old scripts may have installed that the
// agent leaves alone: the hosted MCP (setup-mcp-host.sh) and workers the
// contract does not deploy (channel).
var UnmanagedUnits = []string{"agentkeys-mcp-server.service", "mcp-endpoint-server.service"}

// unmanaged lists the agentkeys units (and the hosted MCP's) on the host
// that the spec does not manage: left untouched, and reported.
func unmanaged(env *agent.Env, want map[string]unitState) []string {
	ents, err := os.ReadDir(env.Path(UnitDir))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if _, ok := want[n]; ok || !strings.HasSuffix(n, ".service") || strings.HasPrefix(n, "agentkeys-hostagent") {
			continue
		}
		if strings.HasPrefix(n, "agentkeys-") || slices.Contains(UnmanagedUnits, n) {
			out = append(out, n+" (not managed by the agent; left untouched)")
		}
	}
	return out
}

func why(a, b unitState) string {
	var w []string
	if a.Unit != b.Unit {
		w = append(w, "unit")
	}
	if a.Env != b.Env {
		w = append(w, "env")
	}
	if a.Binary != b.Binary {
		w = append(w, "binary")
	}
	return strings.Join(w, ", ")
}
