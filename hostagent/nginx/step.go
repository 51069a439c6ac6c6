package nginx

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
)

// Step converges the vhost files and reloads nginx only when they (or a
// served certificate) changed. The reload is recorded in the intent journal
// before the files change, so a run killed in between leaves it owed. A
// config that fails nginx -t is never left live: the vhost files nginx last
// loaded (kept in the applied record) are put back and checked again, and
// the error says what is on disk. A config that passes nginx -t but whose
// reload (or start) fails stays in place, with the reload still owed.
type Step struct {
	// ListenAddr restricts listen directives to one address ("" = all;
	// the sandbox uses 127.0.0.1).
	ListenAddr string
	// Mutate is a test hook that edits a rendered file before it is written.
	Mutate func(host string, data []byte) []byte
}

// Name implements agent.Step.
func (s *Step) Name() string { return "nginx" }

// AppliedRecord is the host path of what nginx was last reloaded with: the
// hash of the config and the served certificates, and the vhost files
// themselves. A renewal changes certificates but no config byte, so the hash
// changes and nginx reloads; a rejected config is rolled back to the files.
// It lives in the agent's root-only directory: the rollback writes its files
// as root, so the service user (who owns the state dir) must not be able to
// replace it. Earlier agents kept it in <stateDir>/nginx/ (applied.json,
// before that applied.sha256); that copy is ignored, neither read nor
// removed (a file there may be the service user's). Without a record the
// first run reloads nginx once and a rejected config is rolled back to the
// vhost files found before the run.
func AppliedRecord(stateDir string) string {
	return path.Join(agent.AgentDir(stateDir), "nginx-applied.json")
}

type applied struct {
	SHA256 string            `json:"sha256"`
	Files  map[string]string `json:"files"` // host path -> content
}

// IsVhostPath reports whether p is a path this step owns:
// <confDir>/<FilePrefix>*.conf, and nothing else. The rollback writes only
// such paths, whatever a record names.
func IsVhostPath(confDir, p string) bool {
	base := path.Base(p)
	return path.IsAbs(p) && path.Clean(p) == p && path.Dir(p) == path.Clean(confDir) &&
		strings.HasPrefix(base, FilePrefix) && strings.HasSuffix(base, ".conf") && len(base) >= len(FilePrefix)+len(".conf")
}

func readApplied(env *agent.Env) (*applied, error) {
	var a applied
	found, err := fsx.ReadJSON(env.Root, AppliedRecord(env.Spec.StateDir), &a)
	switch {
	case !found:
		return nil, err
	case err != nil:
		return nil, nil // unusable: as if absent (reload, then rewrite it)
	}
	return &a, nil
}

// Run implements agent.Step.
func (s *Step) Run(ctx context.Context, env *agent.Env) (agent.Result, error) {
	res := agent.Result{Step: s.Name(), Detail: map[string]any{}}
	sp := env.Spec
	vhosts, err := Render(sp, env.Root, s.ListenAddr)
	if err != nil {
		return res, agent.BadInput(err)
	}
	owner, err := env.Owner("", "")
	if err != nil {
		return res, err
	}
	if _, err := env.EnsureDir(&res, path.Join(sp.Nginx.Webroot, ".well-known", "acme-challenge"), 0o755, owner); err != nil {
		return res, fmt.Errorf("webroot: %w", err)
	}

	phases := map[string]string{}
	want := map[string][]byte{}
	h := sha256.New()
	for i := range vhosts {
		v := &vhosts[i]
		if s.Mutate != nil {
			v.Data = s.Mutate(v.Host, v.Data)
		}
		want[v.Path] = v.Data
		phases[v.Host] = v.Phase
		fmt.Fprintf(h, "%s\n%d\n", v.Path, len(v.Data))
		h.Write(v.Data)
		if v.Phase == "B" {
			fc, _ := CertFiles(v.Host)
			b, err := os.ReadFile(env.Path(fc))
			if err != nil {
				return res, err
			}
			h.Write(b)
		}
	}
	res.Detail["phases"] = phases
	marker := hex.EncodeToString(h.Sum(nil)) + "\n"

	// What is on disk now: our files.
	old := map[string][]byte{}
	existing, err := filepath.Glob(filepath.Join(env.Path(sp.Nginx.ConfDir), FilePrefix+"*.conf"))
	if err != nil {
		return res, err
	}
	for _, p := range existing {
		b, err := os.ReadFile(p)
		if err != nil {
			return res, err
		}
		old[path.Join(sp.Nginx.ConfDir, filepath.Base(p))] = b
	}
	var write, remove []string
	for p, data := range want {
		if cur, ok := old[p]; !ok || !bytes.Equal(cur, data) {
			write = append(write, p)
		}
	}
	for p := range old {
		if _, ok := want[p]; !ok {
			remove = append(remove, p)
		}
	}
	sort.Strings(write)
	sort.Strings(remove)
	last, err := readApplied(env)
	if err != nil {
		return res, err
	}
	owed, err := env.IsPending(agent.ActionReloadNginx)
	if err != nil {
		return res, err
	}
	if len(write) == 0 && len(remove) == 0 && last != nil && last.SHA256 == marker && !owed {
		res.Status = agent.OK
		return res, nil
	}

	if env.DryRun {
		for _, p := range write {
			res.Changes = append(res.Changes, "would write "+p)
		}
		for _, p := range remove {
			res.Changes = append(res.Changes, "would remove stale "+p)
		}
		res.Changes = append(res.Changes, "would test and reload nginx")
		res.Status = agent.Changed
		return res, nil
	}

	if err := env.Intend(agent.ActionReloadNginx); err != nil {
		return res, err
	}
	for _, p := range write {
		if _, err := env.WriteFile(&res, p, want[p], 0o644, owner); err != nil {
			return res, err
		}
	}
	for _, p := range remove {
		if _, err := fsx.RemoveFile(env.Root, p); err != nil {
			return res, err
		}
		env.Counters.FilesWritten++
		res.Changes = append(res.Changes, "removed stale "+p)
	}
	fsx.Fault("nginx:before-reload")
	if err := env.ReloadNginx(ctx); err != nil {
		var rejected *agent.NginxTestError
		if errors.As(err, &rejected) {
			return res, s.rollback(ctx, env, last, old, rejected.Err)
		}
		// nginx -t accepted the files: they stay, and so does the owed
		// reload (no record is written: nginx has not loaded them).
		return res, fmt.Errorf("nginx -t accepts the new vhosts, which stay in place, but reloading nginx failed (the reload is owed to the next run; nginx keeps serving its running configuration): %w", err)
	}
	res.Changes = append(res.Changes, "nginx -t passed; reloaded nginx")
	rec := applied{SHA256: marker, Files: map[string]string{}}
	for p, b := range want {
		rec.Files[p] = string(b)
	}
	rb, _ := json.MarshalIndent(rec, "", "  ")
	if _, err := env.EnsureDir(nil, agent.AgentDir(sp.StateDir), 0o700, owner); err != nil {
		return res, err
	}
	if _, err := env.WriteFile(nil, AppliedRecord(sp.StateDir), append(rb, '\n'), 0o600, owner); err != nil {
		return res, err
	}
	if err := env.Done(agent.ActionReloadNginx); err != nil {
		return res, err
	}
	res.Status = agent.Changed
	var b strings.Builder
	for _, v := range vhosts {
		fmt.Fprintf(&b, "%s=%s ", v.Host, v.Phase)
	}
	env.Logf("nginx: %s", strings.TrimSpace(b.String()))
	return res, nil
}

// rollback puts back the vhost files nginx last loaded (from the applied
// record; without one, those found on disk before this run), tests them
// again and returns an error that says what is on disk. Nginx itself was
// not reloaded, so it keeps serving the configuration it runs. Only the
// step's own vhost paths (IsVhostPath) are written: a record naming any
// other path is refused for that path.
func (s *Step) rollback(ctx context.Context, env *agent.Env, last *applied, before map[string][]byte, cause error) error {
	restore, what := before, "the vhost files found before this run (the agent has no record of what nginx last loaded)"
	// refused: paths the record names that are not the step's to write.
	var refused []string
	if last != nil {
		restore, what = map[string][]byte{}, "the vhost files nginx last loaded"
		for p, c := range last.Files {
			if !IsVhostPath(env.Spec.Nginx.ConfDir, p) {
				refused = append(refused, p)
				continue
			}
			restore[p] = []byte(c)
		}
	}
	note := ""
	if len(refused) > 0 {
		sort.Strings(refused)
		what = "the vhost files nginx last loaded that are the agent's"
		note = fmt.Sprintf("; refused to write %s, which %s names: not one of the agent's vhosts (%s/%s*.conf); that record is not the agent's, delete it",
			strings.Join(refused, ", "), AppliedRecord(env.Spec.StateDir), path.Clean(env.Spec.Nginx.ConfDir), FilePrefix)
	}
	owner, err := env.Owner("", "")
	if err != nil {
		return fmt.Errorf("nginx rejected the new vhosts (%w) and restoring %s failed: %v%s", cause, what, err, note)
	}
	var errs []error
	for p, b := range restore {
		if _, err := fsx.WriteFileAtomic(env.Root, p, b, 0o644, owner); err != nil {
			errs = append(errs, err)
		}
	}
	ours, _ := filepath.Glob(filepath.Join(env.Path(env.Spec.Nginx.ConfDir), FilePrefix+"*.conf"))
	for _, f := range ours {
		p := path.Join(env.Spec.Nginx.ConfDir, filepath.Base(f))
		if _, keep := restore[p]; !keep {
			if _, err := fsx.RemoveFile(env.Root, p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("nginx rejected the new vhosts (%w) and restoring %s failed, so the rejected files may still be on disk: %v%s", cause, what, err, note)
	}
	if err := env.Sys.NginxTest(ctx); err != nil {
		return fmt.Errorf("nginx rejected the new vhosts (%w); %s are restored, but nginx -t rejects them too (%v): a certificate or a file outside the agent's vhosts is at fault; nginx keeps serving its running configuration until it restarts%s", cause, what, err, note)
	}
	if last != nil && len(refused) == 0 {
		// The disk holds what nginx runs: no reload is owed.
		if err := env.Done(agent.ActionReloadNginx); err != nil {
			return fmt.Errorf("nginx rejected the new vhosts (%w); %s are restored and pass nginx -t, but clearing the owed reload failed: %v", cause, what, err)
		}
	}
	return fmt.Errorf("nginx rejected the new vhosts; %s are restored and pass nginx -t, and nginx keeps serving its running configuration: %w%s", what, cause, note)
}
