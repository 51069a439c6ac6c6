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
// <sitesDir>/agentkeys-<name>, and nothing else. The rollback writes only
// such paths, whatever a record names.
func IsVhostPath(sitesDir, p string) bool {
	return path.IsAbs(p) && path.Clean(p) == p && path.Dir(p) == path.Clean(sitesDir) && IsSiteName(path.Base(p))
}

// linkDir is where sites are enabled: the spec's enabled dir where the
// host's nginx has one (Debian), else its conf dir, with a .conf suffix.
func linkDir(env *agent.Env) (dir, suffix string) {
	sp := env.Spec
	if st, err := os.Stat(env.Path(sp.Nginx.EnabledDir)); err == nil && st.IsDir() {
		return sp.Nginx.EnabledDir, ""
	}
	return sp.Nginx.ConfDir, ".conf"
}

// linkFor is the enabling symlink of a site and its target, relative so it
// resolves the same under a sandbox root.
func linkFor(env *agent.Env, site string) (link, target string) {
	dir, suffix := linkDir(env)
	rel, err := filepath.Rel(dir, env.Spec.Nginx.SitesDir)
	if err != nil {
		rel = env.Spec.Nginx.SitesDir
	}
	return path.Join(dir, site+suffix), path.Join(rel, site)
}

// ownedOnDisk returns the agentkeys-* sites in the sites dir (content by
// host path), the agentkeys-* links in the link dir and the earlier agents'
// agentkeys-*.conf files in the conf dir.
func ownedOnDisk(env *agent.Env) (sites map[string][]byte, links map[string]string, legacy []string, err error) {
	sp := env.Spec
	sites, links = map[string][]byte{}, map[string]string{}
	ents, err := os.ReadDir(env.Path(sp.Nginx.SitesDir))
	if err != nil && !os.IsNotExist(err) {
		return nil, nil, nil, err
	}
	for _, e := range ents {
		if !IsSiteName(e.Name()) || !e.Type().IsRegular() {
			continue
		}
		p := path.Join(sp.Nginx.SitesDir, e.Name())
		b, err := os.ReadFile(env.Path(p))
		if err != nil {
			return nil, nil, nil, err
		}
		sites[p] = b
	}
	dir, suffix := linkDir(env)
	ents, err = os.ReadDir(env.Path(dir))
	if err != nil && !os.IsNotExist(err) {
		return nil, nil, nil, err
	}
	for _, e := range ents {
		name := strings.TrimSuffix(e.Name(), suffix)
		if e.Type()&os.ModeSymlink == 0 || !IsSiteName(name) || (suffix != "" && !strings.HasSuffix(e.Name(), suffix)) {
			continue
		}
		t, err := os.Readlink(env.Path(path.Join(dir, e.Name())))
		if err != nil {
			return nil, nil, nil, err
		}
		links[path.Join(dir, e.Name())] = t
	}
	// Earlier agents wrote regular agentkeys-<host>.conf files in conf.d.
	old, err := filepath.Glob(filepath.Join(env.Path(sp.Nginx.ConfDir), SitePrefix+"*.conf"))
	if err != nil {
		return nil, nil, nil, err
	}
	for _, f := range old {
		if st, err := os.Lstat(f); err == nil && st.Mode().IsRegular() {
			legacy = append(legacy, path.Join(sp.Nginx.ConfDir, filepath.Base(f)))
		}
	}
	sort.Strings(legacy)
	return sites, links, legacy, nil
}

// setLinks makes exactly the given sites enabled: their links created or
// pointed right, every other agentkeys-* link removed.
func setLinks(env *agent.Env, res *agent.Result, sites []string, have map[string]string) error {
	want := map[string]string{}
	for _, site := range sites {
		l, t := linkFor(env, site)
		want[l] = t
	}
	for l, t := range want {
		if have[l] == t {
			continue
		}
		if env.DryRun {
			res.Changes = append(res.Changes, "would enable "+l)
			continue
		}
		p := env.Path(l)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		tmp := p + ".agentkeys-new"
		os.Remove(tmp)
		if err := os.Symlink(t, tmp); err != nil {
			return err
		}
		if err := os.Rename(tmp, p); err != nil {
			return err
		}
		env.Counters.FilesWritten++
		res.Changes = append(res.Changes, "enabled "+l+" -> "+t)
	}
	for l := range have {
		if _, ok := want[l]; ok {
			continue
		}
		if env.DryRun {
			res.Changes = append(res.Changes, "would disable "+l)
			continue
		}
		if _, err := fsx.RemoveFile(env.Root, l); err != nil {
			return err
		}
		env.Counters.FilesWritten++
		res.Changes = append(res.Changes, "disabled "+l)
	}
	return nil
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
	if _, err := env.EnsureDir(&res, sp.Nginx.SitesDir, 0o755, owner); err != nil {
		return res, err
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

	// What is on disk now: our sites, links and earlier agents' files.
	old, links, legacy, err := ownedOnDisk(env)
	if err != nil {
		return res, err
	}
	var write, remove, sites []string
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
	for _, v := range vhosts {
		sites = append(sites, v.Site)
	}
	sort.Strings(write)
	sort.Strings(remove)
	sort.Strings(sites)
	linksOK := true
	for _, site := range sites {
		if l, t := linkFor(env, site); links[l] != t {
			linksOK = false
		}
	}
	linksOK = linksOK && len(links) == len(sites)
	last, err := readApplied(env)
	if err != nil {
		return res, err
	}
	owed, err := env.IsPending(agent.ActionReloadNginx)
	if err != nil {
		return res, err
	}
	if len(write) == 0 && len(remove) == 0 && len(legacy) == 0 && linksOK && last != nil && last.SHA256 == marker && !owed {
		res.Status = agent.OK
		return res, nil
	}

	if env.DryRun {
		for _, p := range write {
			res.Changes = append(res.Changes, "would write "+p)
		}
		for _, p := range append(append([]string{}, remove...), legacy...) {
			res.Changes = append(res.Changes, "would remove stale "+p)
		}
		if err := setLinks(env, &res, sites, links); err != nil {
			return res, err
		}
		res.Changes = append(res.Changes, "would test and reload nginx")
		res.Status = agent.Changed
		return res, nil
	}

	if err := env.Intend(agent.ActionReloadNginx); err != nil {
		return res, err
	}
	for _, p := range write {
		if _, err := env.WriteManaged(&res, p, want[p], 0o644, owner); err != nil {
			return res, err
		}
	}
	for _, p := range append(append([]string{}, remove...), legacy...) {
		if _, err := env.Backup(&res, p, false); err != nil {
			return res, err
		}
		if _, err := fsx.RemoveFile(env.Root, p); err != nil {
			return res, err
		}
		env.Counters.FilesWritten++
		res.Changes = append(res.Changes, "removed stale "+p)
	}
	if err := setLinks(env, &res, sites, links); err != nil {
		return res, err
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
	sp := env.Spec
	restore, what := before, "the sites found before this run (the agent has no record of what nginx last loaded)"
	// refused: paths the record names that are not the step's to write.
	var refused []string
	if last != nil {
		restore, what = map[string][]byte{}, "the sites nginx last loaded"
		for p, c := range last.Files {
			if !IsVhostPath(sp.Nginx.SitesDir, p) {
				refused = append(refused, p)
				continue
			}
			restore[p] = []byte(c)
		}
	}
	note := ""
	if len(refused) > 0 {
		sort.Strings(refused)
		what = "the sites nginx last loaded that are the agent's"
		note = fmt.Sprintf("; refused to write %s, which %s names: not one of the agent's sites (%s/%s*); that record is not the agent's, delete it",
			strings.Join(refused, ", "), AppliedRecord(sp.StateDir), path.Clean(sp.Nginx.SitesDir), SitePrefix)
	}
	owner, err := env.Owner("", "")
	if err != nil {
		return fmt.Errorf("nginx rejected the new sites (%w) and restoring %s failed: %v%s", cause, what, err, note)
	}
	var errs []error
	var sites []string
	for p, b := range restore {
		if _, err := fsx.WriteFileAtomic(env.Root, p, b, 0o644, owner); err != nil {
			errs = append(errs, err)
		}
		sites = append(sites, path.Base(p))
	}
	cur, links, _, err := ownedOnDisk(env)
	if err != nil {
		errs = append(errs, err)
	}
	for p := range cur {
		if _, keep := restore[p]; !keep {
			if _, err := fsx.RemoveFile(env.Root, p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	var res agent.Result
	if err := setLinks(env, &res, sites, links); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("nginx rejected the new sites (%w) and restoring %s failed, so the rejected files may still be on disk: %v%s", cause, what, err, note)
	}
	if err := env.Sys.NginxTest(ctx); err != nil {
		return fmt.Errorf("nginx rejected the new sites (%w); %s are restored, but nginx -t rejects them too (%v): a certificate or a file outside the agent's sites is at fault; nginx keeps serving its running configuration until it restarts%s", cause, what, err, note)
	}
	if last != nil && len(refused) == 0 {
		// The disk holds what nginx runs: no reload is owed.
		if err := env.Done(agent.ActionReloadNginx); err != nil {
			return fmt.Errorf("nginx rejected the new sites (%w); %s are restored and pass nginx -t, but clearing the owed reload failed: %v", cause, what, err)
		}
	}
	return fmt.Errorf("nginx rejected the new sites; %s are restored and pass nginx -t, and nginx keeps serving its running configuration: %w%s", what, cause, note)
}
