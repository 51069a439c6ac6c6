package nginx

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
)

// Step converges the vhost files and reloads nginx only when they (or a
// served certificate) changed. A config that fails nginx -t is rolled back
// before the error is returned, so it is never left live.
type Step struct {
	// ListenAddr restricts listen directives to one address ("" = all;
	// the sandbox uses 127.0.0.1).
	ListenAddr string
	// Mutate is a test hook that edits a rendered file before it is written.
	Mutate func(host string, data []byte) []byte
}

// Name implements agent.Step.
func (s *Step) Name() string { return "nginx" }

// AppliedMarker is the host path of the hash of the config (and the served
// certificates) nginx was last reloaded with. A run killed between writing
// the files and reloading finds it stale and reloads; so does a renewal,
// which changes certificates but no config byte.
func AppliedMarker(stateDir string) string { return path.Join(stateDir, "nginx", "applied.sha256") }

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

	// What is on disk now: our files, kept for the rollback.
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
	applied, _ := os.ReadFile(env.Path(AppliedMarker(sp.StateDir)))
	if len(write) == 0 && len(remove) == 0 && string(applied) == marker {
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

	rollback := func() error {
		var errs []error
		for _, p := range append(append([]string{}, write...), remove...) {
			if b, ok := old[p]; ok {
				_, err := fsx.WriteFileAtomic(env.Root, p, b, 0o644, owner)
				errs = append(errs, err)
			} else if err := os.Remove(env.Path(p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	for _, p := range write {
		if _, err := env.WriteFile(&res, p, want[p], 0o644, owner); err != nil {
			return res, errors.Join(err, rollback())
		}
	}
	for _, p := range remove {
		if err := os.Remove(env.Path(p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return res, errors.Join(err, rollback())
		}
		env.Counters.FilesWritten++
		res.Changes = append(res.Changes, "removed stale "+p)
	}
	if err := env.ReloadNginx(ctx); err != nil {
		if rerr := rollback(); rerr != nil {
			return res, fmt.Errorf("nginx rejected the new vhosts and restoring the previous files failed (%v): %w", rerr, err)
		}
		return res, fmt.Errorf("nginx rejected the new vhosts; the previous files are restored and nginx keeps serving them: %w", err)
	}
	res.Changes = append(res.Changes, "nginx -t passed; reloaded nginx")
	if _, err := env.WriteFile(nil, AppliedMarker(sp.StateDir), []byte(marker), 0o644, owner); err != nil {
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
