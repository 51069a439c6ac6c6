package steps

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
	"github.com/agentkeys/agentkeys-infra/naming"
)

// Units writes each service's env file and hardened systemd unit, reloads
// systemd if a unit changed, enables and starts every unit, and restarts
// only the units whose binary, unit or env file changed since their last
// (re)start, tracked by content hashes in <stateDir>/units.state (written
// after the restarts). Before a unit or env file changes, the daemon-reload
// and restarts it calls for are recorded in the intent journal
// (agent.Env.Intend), and each is removed once done: a run killed between
// writing the files and reloading systemd leaves them owed, and the next
// run carries them out although it writes nothing.
type Units struct {
	// Extra returns additional unit files by name (the certificate renew
	// timer and its service): written, enabled and, for timers, started;
	// never restarted.
	Extra func(env *agent.Env) map[string]string
}

func (Units) Name() string { return "units" }

// RPCDefaults is the chain RPC endpoint used when the spec has no rpcUrl
// (the chain-profiles defaults).
var RPCDefaults = map[string]string{
	"heima": "wss://rpc.heima-parachain.heima.network",
	"base":  "https://mainnet.base.org",
}

// RPCKey is the env key of the chain RPC URL (chain-suffixed, env_profile convention).
func RPCKey(chain string) string { return "RPC_URL_" + strings.ToUpper(chain) }

// EnvFile renders a service's env file: chain facts first, then the
// service's own values, which win.
func EnvFile(s *spec.HostSpec, svc *spec.Service) []byte {
	m := map[string]string{"AGENTKEYS_CHAIN": s.Chain}
	suffix := "_" + strings.ToUpper(s.Chain)
	if st, err := naming.ParseStack(s.Stack); err == nil {
		suffix = "_" + st.ContractSuffix()
	}
	for k, v := range s.Contracts {
		m[strings.ToUpper(k)+suffix] = v
	}
	rpc := s.RPCURL
	if rpc == "" {
		rpc = RPCDefaults[s.Chain]
	}
	if rpc != "" {
		m[RPCKey(s.Chain)] = rpc
	}
	if svc.Name == "broker" {
		m["BROKER_OIDC_KEYPAIR_PATH"] = OIDCKeyPath(s)
		m["BROKER_SESSION_KEYPAIR_PATH"] = SessionKeyPath(s)
	}
	for k, v := range svc.Env {
		m[k] = v
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "# Managed by agentkeys-hostagent (stack %s); edits are overwritten.\n", s.Stack)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, m[k])
	}
	return []byte(b.String())
}

// UnitFile renders a service's hardened systemd unit.
func UnitFile(s *spec.HostSpec, svc *spec.Service) []byte {
	var b strings.Builder
	w := func(f string, a ...any) { fmt.Fprintf(&b, f+"\n", a...) }
	w("# Managed by agentkeys-hostagent (stack %s); edits are overwritten.", s.Stack)
	w("[Unit]")
	w("Description=AgentKeys %s", svc.Name)
	w("After=network-online.target")
	w("Wants=network-online.target")
	w("")
	w("[Service]")
	w("Type=simple")
	w("User=%s", s.ServiceUser)
	w("Group=%s", s.ServiceUser)
	w("EnvironmentFile=%s", svc.EnvFile)
	w("ExecStart=%s", BinPath(svc.Name))
	w("Restart=on-failure")
	w("RestartSec=2")
	if strings.HasPrefix(s.StateDir, "/var/lib/") {
		w("StateDirectory=%s", strings.TrimPrefix(s.StateDir, "/var/lib/"))
		w("StateDirectoryMode=0750")
	} else {
		w("ReadWritePaths=%s", s.StateDir)
	}
	if svc.MasterSecret {
		w("LoadCredential=%s:%s", MasterSecret, MasterSecretPath(s))
		w("Environment=AGENTKEYS_MASTER_SECRET_FILE=%%d/%s", MasterSecret)
	}
	w("UMask=0077")
	w("NoNewPrivileges=yes")
	w("ProtectSystem=strict")
	w("ProtectHome=yes")
	w("PrivateTmp=yes")
	w("PrivateDevices=yes")
	w("PrivateUsers=yes")
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

type unitState struct {
	Unit   string `json:"unit"`
	Env    string `json:"env"`
	Binary string `json:"binary"`
}

func (u Units) Run(ctx context.Context, env *agent.Env) (agent.Result, error) {
	res := agent.Result{Step: "units"}
	s := env.Spec
	envOwner, err := serviceOwner(env, true)
	if err != nil {
		return res, err
	}
	root := mustRoot(env)
	bins := InstalledHashes(env)

	// What an interrupted run owes.
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
		o    ownerT
		unit string // the service unit that reads it ("" for extra units)
		def  bool   // a unit definition (needs daemon-reload)
	}
	var files []file
	want := map[string]unitState{}
	for i := range s.Services {
		svc := &s.Services[i]
		name := UnitName(svc.Name)
		eb, ub := EnvFile(s, svc), UnitFile(s, svc)
		files = append(files,
			file{path: svc.EnvFile, data: eb, mode: 0o640, o: envOwner, unit: name},
			file{path: UnitDir + "/" + name, data: ub, mode: 0o644, o: root, unit: name, def: true})
		bh := bins[svc.Name]
		if bh == "" {
			if b, err := os.ReadFile(env.Path(BinPath(svc.Name))); err == nil {
				bh = sha(b)
			}
		}
		want[name] = unitState{Unit: sha(ub), Env: sha(eb), Binary: bh}
	}
	var extra []string
	if u.Extra != nil {
		names := []string{}
		ex := u.Extra(env)
		for name := range ex {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			files = append(files, file{path: UnitDir + "/" + name, data: []byte(ex[name]), mode: 0o644, o: root, def: true})
			if strings.HasSuffix(name, ".timer") {
				extra = append(extra, name)
			}
		}
	}

	// Record what the changes will call for, then make them.
	var intents []string
	for _, f := range files {
		d, err := env.Differs(f.path, f.data, f.mode, f.o)
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
	if err := env.Intend(intents...); err != nil {
		return res, err
	}
	for _, a := range intents {
		owed[a] = true
	}
	for _, f := range files {
		if _, err := env.WriteFile(&res, f.path, f.data, f.mode, f.o); err != nil {
			return res, err
		}
	}
	fsx.Fault("units:before-daemon-reload")

	var have map[string]unitState
	if b, err := os.ReadFile(env.Path(unitsStatePath(s))); err == nil {
		json.Unmarshal(b, &have)
	}
	if owed[agent.ActionDaemonReload] {
		if env.DryRun {
			res.Changes = append(res.Changes, "would systemctl daemon-reload")
		} else {
			if err := env.Sys.Systemctl(ctx, "daemon-reload"); err != nil {
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
	units := make([]string, 0, len(want))
	for name := range want {
		units = append(units, name)
	}
	sort.Strings(units)
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
		for _, verb := range []string{"enable", "start"} {
			if need := map[string]bool{"enable": !enabled, "start": !active}[verb]; !need {
				continue
			}
			if env.DryRun {
				res.Changes = append(res.Changes, "would "+verb+" "+t)
				continue
			}
			if err := env.Sys.Systemctl(ctx, verb, t); err != nil {
				return res, err
			}
			res.Changes = append(res.Changes, verb+"d "+t)
		}
	}
	for _, u := range units {
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
		switch {
		case env.DryRun:
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
				return res, err
			}
			res.Changes = append(res.Changes, "started "+u)
			detail[u] = "started"
		case stale:
			if err := env.Restart(ctx, u); err != nil {
				return res, err
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
	if env.DryRun {
		return res, nil
	}
	sb, _ := json.MarshalIndent(want, "", "  ")
	_, err = env.WriteFile(&res, unitsStatePath(s), append(sb, '\n'), 0o600, root)
	return res, err
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
