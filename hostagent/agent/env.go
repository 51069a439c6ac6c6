package agent

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"sync"

	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
)

// Report gathers facts that the JSON summary lifts out of the steps: hosts
// issued or skipped by the certificate step, and health checks. Safe for
// concurrent use.
type Report struct {
	mu      sync.Mutex
	issued  map[string]bool
	skipped map[string]string
	health  map[string]HealthCheck
}

// Names of the broker's health checks in the summary. The Pulumi program
// federates only on HealthBrokerTLS.
const (
	HealthBrokerDiscovery = "broker-openid-configuration" // on the service's port
	HealthBrokerJWKS      = "broker-jwks"                 // on the service's port
	HealthBrokerTLS       = "broker-tls"                  // discovery through nginx over TLS
)

// HealthCheck is one probe's outcome.
type HealthCheck struct {
	URL    string `json:"url"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
	// Unit and UnitState: the service's unit and systemd's state of it.
	Unit      string `json:"unit,omitempty"`
	UnitState string `json:"unitState,omitempty"`
}

// HostsSummary lists hostnames with a certificate in place (issued this run
// or already valid) and those skipped, with the reason.
type HostsSummary struct {
	Issued  []string          `json:"issued"`
	Skipped map[string]string `json:"skipped"`
}

// Issued records that host has a valid certificate.
func (r *Report) Issued(host string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.issued == nil {
		r.issued = map[string]bool{}
	}
	r.issued[host] = true
	delete(r.skipped, host)
}

// SkipHost records that host was skipped and why.
func (r *Report) SkipHost(host, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.skipped == nil {
		r.skipped = map[string]string{}
	}
	r.skipped[host] = reason
}

// Health records one health check under name.
func (r *Report) Health(name string, c HealthCheck) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.health == nil {
		r.health = map[string]HealthCheck{}
	}
	r.health[name] = c
}

// IsIssued reports whether host has a valid certificate recorded.
func (r *Report) IsIssued(host string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.issued[host]
}

// Recorded returns "issued" or "skipped" when host was recorded, else "".
func (r *Report) Recorded(host string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.issued[host]:
		return "issued"
	case r.skipped[host] != "":
		return "skipped"
	}
	return ""
}

// Hosts returns the hosts summary (sorted, never nil).
func (r *Report) Hosts() HostsSummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := HostsSummary{Issued: []string{}, Skipped: map[string]string{}}
	for k := range r.issued {
		h.Issued = append(h.Issued, k)
	}
	sort.Strings(h.Issued)
	for k, v := range r.skipped {
		h.Skipped[k] = v
	}
	return h
}

// HealthChecks returns a copy of the recorded health checks.
func (r *Report) HealthChecks() map[string]HealthCheck {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]HealthCheck{}
	for k, v := range r.health {
		out[k] = v
	}
	return out
}

// Path maps an absolute host path under env.Root.
func (e *Env) Path(p string) string { return fsx.HostPath(e.Root, p) }

// Owner resolves user (and group, defaulting to the user's primary group)
// through env.Sys. An empty user means root.
func (e *Env) Owner(user, group string) (fsx.Owner, error) {
	if user == "" && group == "" {
		return e.rootOwner(), nil
	}
	o := fsx.Owner{UID: -1, GID: -1}
	if user != "" {
		uid, gid, err := e.Sys.LookupUser(user)
		if err != nil {
			return o, fmt.Errorf("user %s: %w", user, err)
		}
		o.UID, o.GID = uid, gid
	} else {
		o.UID = e.rootOwner().UID
	}
	if group != "" {
		gid, err := e.Sys.LookupGroup(group)
		if err != nil {
			return o, fmt.Errorf("group %s: %w", group, err)
		}
		o.GID = gid
	}
	return o, nil
}

// rootOwner is root; in a sandbox that does not run as root, chown is
// impossible and ownership is left as the process creates it.
func (e *Env) rootOwner() fsx.Owner {
	if e.Sys != nil && e.Sys.Sandbox() && os.Geteuid() != 0 {
		return fsx.NoOwner
	}
	return fsx.Owner{UID: 0, GID: 0}
}

// WriteFile converges one file (path is a host path, mapped under Root):
// in a dry run it only reports whether it would change; otherwise it writes
// atomically and counts the write. It appends a change line to res.
func (e *Env) WriteFile(res *Result, path string, data []byte, mode fs.FileMode, o fsx.Owner) (bool, error) {
	if e.DryRun {
		d, err := fsx.Differs(e.Root, path, data, mode, o)
		if err != nil {
			return false, err
		}
		if d && res != nil {
			res.Changes = append(res.Changes, "would write "+path)
		}
		return d, nil
	}
	changed, err := fsx.WriteFileAtomic(e.Root, path, data, mode, o)
	if err != nil {
		return false, err
	}
	if changed {
		e.count(func(c *Counters) { c.FilesWritten++ })
		if res != nil {
			res.Changes = append(res.Changes, "wrote "+path)
		}
	}
	return changed, nil
}

// CreateOnce writes path only if absent and never replaces it (secrets).
func (e *Env) CreateOnce(res *Result, path string, data []byte, mode fs.FileMode, o fsx.Owner) (bool, error) {
	if e.DryRun {
		if e.Exists(path) {
			return false, nil
		}
		if res != nil {
			res.Changes = append(res.Changes, "would create "+path)
		}
		return true, nil
	}
	created, err := fsx.CreateOnce(e.Root, path, data, mode, o)
	if err != nil {
		return false, err
	}
	if created {
		e.count(func(c *Counters) { c.FilesWritten++ })
		if res != nil {
			res.Changes = append(res.Changes, "created "+path)
		}
	}
	return created, nil
}

// ReplaceDir replaces a directory's files as a unit (fsx.ReplaceDir),
// counting each file written.
func (e *Env) ReplaceDir(res *Result, dir string, files []fsx.File, mode fs.FileMode, o fsx.Owner) error {
	if e.DryRun {
		if res != nil {
			res.Changes = append(res.Changes, "would replace "+dir)
		}
		return nil
	}
	if err := fsx.ReplaceDir(e.Root, dir, files, mode, o); err != nil {
		return err
	}
	e.count(func(c *Counters) { c.FilesWritten += len(files) })
	if res != nil {
		res.Changes = append(res.Changes, "replaced "+dir)
	}
	return nil
}

// EnsureDir converges a directory's existence, mode and owner.
func (e *Env) EnsureDir(res *Result, path string, mode fs.FileMode, o fsx.Owner) (bool, error) {
	if e.DryRun {
		d, err := fsx.DirDiffers(e.Root, path, mode, o)
		if d && err == nil && res != nil {
			res.Changes = append(res.Changes, "would create or fix directory "+path)
		}
		return d, err
	}
	changed, err := fsx.EnsureDir(e.Root, path, mode, o)
	if changed && res != nil {
		res.Changes = append(res.Changes, "directory "+path)
	}
	return changed, err
}

// Exists reports whether a host path exists under Root.
func (e *Env) Exists(path string) bool {
	_, err := os.Lstat(e.Path(path))
	return err == nil
}

// Restart restarts units (counted), unless dry run.
func (e *Env) Restart(ctx context.Context, units ...string) error {
	if e.DryRun || len(units) == 0 {
		return nil
	}
	if err := e.Sys.Systemctl(ctx, "restart", units...); err != nil {
		return err
	}
	e.count(func(c *Counters) { c.Restarts += len(units) })
	return nil
}

// NginxTestError is ReloadNginx's error when nginx -t rejects the
// configuration on disk; any other error of ReloadNginx is the reload (or
// start) itself failing after the test passed.
type NginxTestError struct{ Err error }

func (e *NginxTestError) Error() string { return e.Err.Error() }
func (e *NginxTestError) Unwrap() error { return e.Err }

// ReloadNginx runs nginx -t and, only if it passes, reloads nginx (counted).
// A failing test returns a *NginxTestError and leaves the running config
// alone.
func (e *Env) ReloadNginx(ctx context.Context) error {
	if e.DryRun {
		return nil
	}
	if err := e.Sys.NginxTest(ctx); err != nil {
		return &NginxTestError{Err: err}
	}
	if err := e.Sys.NginxReload(ctx); err != nil {
		return err
	}
	e.count(func(c *Counters) { c.Reloads++ })
	return nil
}

// DaemonReload runs systemctl daemon-reload (the runner's system counts it).
func (e *Env) DaemonReload(ctx context.Context) error {
	if e.DryRun {
		return nil
	}
	return e.Sys.Systemctl(ctx, "daemon-reload")
}

// CountACMEOrder counts one certificate order (call it when an order is placed).
func (e *Env) CountACMEOrder() { e.count(func(c *Counters) { c.ACMEOrders++ }) }

// Logf writes a progress line to env.Log (never secrets).
func (e *Env) Logf(format string, a ...any) {
	if e.Log != nil {
		fmt.Fprintf(e.Log, format+"\n", a...)
	}
}

var countMu sync.Mutex

func (e *Env) count(f func(*Counters)) {
	if e.Counters == nil || e.DryRun {
		return
	}
	countMu.Lock()
	f(e.Counters)
	countMu.Unlock()
}
