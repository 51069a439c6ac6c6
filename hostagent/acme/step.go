// Package acme is the host agent's certificate step: ACME HTTP-01 through the
// nginx webroot with lego as a library. A hostname is ordered only when its
// DNS points at this host and a self-probe through nginx succeeds; a valid
// certificate with more than a third of its lifetime left is never re-ordered.
package acme

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/lego"
	legolog "github.com/go-acme/lego/v5/log"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
	"github.com/agentkeys/agentkeys-infra/hostagent/nginx"
)

// Step converges one certificate per public hostname.
type Step struct {
	// Nginx is re-run after certificates change, flipping those hosts to
	// Phase B and reloading; nil leaves that to a later nginx step.
	Nginx *nginx.Step
	// Concurrency bounds parallel orders (0 = every hostname at once, 1 =
	// sequential). A stack has nine hostnames, far below the CA's request
	// limits, and each order mostly waits on the CA's validation: ordering
	// them all at once makes issuing all of them cost about one. Each host
	// still has its own deadline and outcome: one failing name holds none
	// of the others.
	Concurrency int
	// RenewOnly (the renew command) leaves hosts without a certificate alone.
	RenewOnly bool
	// HTTPClient talks to the ACME directory; nil uses lego's default, which
	// trusts the system roots plus LEGO_CA_CERTIFICATES (a test CA's root).
	HTTPClient *http.Client
	// Now is the clock for the renewal decision (tests); nil = time.Now.
	Now func() time.Time
}

// Name implements agent.Step.
func (s *Step) Name() string { return "certificates" }

type outcome struct {
	kind   string // valid, adopted, issued, skipped
	reason string
}

// Run implements agent.Step.
func (s *Step) Run(ctx context.Context, env *agent.Env) (agent.Result, error) {
	res := agent.Result{Step: s.Name()}
	sp := env.Spec
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	out := io.Discard
	if env.Log != nil {
		out = env.Log
	}
	legolog.SetDefault(slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelWarn})))

	hosts := sp.Hostnames()
	results := map[string]outcome{}
	var mu sync.Mutex
	set := func(h string, o outcome) {
		mu.Lock()
		results[h] = o
		mu.Unlock()
	}
	var toOrder []string
	var recovered []string
	// current holds the installed certificate of each host whose renewal is
	// attempted while it still serves: if the renewal fails, that
	// certificate stays in place and the host still counts as issued.
	current := map[string]certInfo{}
	fromCertbot := false // a certificate adopted from certbot is in use
	hadCert := map[string]bool{}
	for _, h := range hosts {
		if !env.DryRun {
			if r, err := recoverPair(env, h); err != nil {
				return res, fmt.Errorf("recover the certificate of %s left by an interrupted run: %w", h, err)
			} else if r {
				recovered = append(recovered, h)
				res.Changes = append(res.Changes, "recovered "+h+" certificate written by an interrupted run")
			}
		}
		fc, pk := nginx.CertFiles(h)
		cur, err := readCert(env.Path(fc), env.Path(pk), h)
		have := err == nil
		hadCert[h] = have
		m := readMeta(env.Path(metaFile(path.Dir(fc))))
		if have && m.Source == "certbot" {
			fromCertbot = true
		}
		if have && !cur.due(now()) && m.accepts(sp.ACME.Directory) {
			set(h, outcome{kind: "valid", reason: describe(cur)})
			continue
		}
		if have && now().Before(cur.NotAfter) && m.accepts(sp.ACME.Directory) {
			current[h] = cur
		}
		if s.RenewOnly && !have {
			set(h, outcome{kind: "skipped", reason: "no certificate yet; apply issues it"})
			continue
		}
		if sp.ACME.CertbotLive != "" && (!have || cur.due(now())) {
			cf, ck := certbotPair(env.Path(sp.ACME.CertbotLive), h)
			if ci, err := readCert(cf, ck, h); err == nil && !ci.due(now()) {
				if err := s.adopt(env, h, cf, ck); err != nil {
					return res, err
				}
				fromCertbot = true
				set(h, outcome{kind: "adopted", reason: "certbot certificate " + describe(ci)})
				continue
			}
		}
		toOrder = append(toOrder, h)
	}

	if len(toOrder) > 0 {
		if env.DryRun {
			for _, h := range toOrder {
				if r, _ := checkDNS(ctx, sp.ACME.Resolver, h, sp.PublicIP); r != "" {
					set(h, outcome{kind: "skipped", reason: r})
				} else {
					set(h, outcome{kind: "issued", reason: "would order"})
				}
			}
		} else if err := s.order(ctx, env, &res, toOrder, set); err != nil {
			return res, err
		}
	}

	// A failed renewal of a certificate that still serves is not a skip:
	// the host keeps its certificate and counts as issued.
	for h, c := range current {
		if o := results[h]; o.kind == "skipped" {
			fails := "failed"
			if env.DryRun {
				fails = "would fail"
			}
			set(h, outcome{kind: "kept", reason: fmt.Sprintf("renewal of %s %s: %s; current certificate %s", h, fails, o.reason, describe(c))})
		}
	}

	timer, err := s.disableCertbotTimer(ctx, env, fromCertbot)
	if err != nil {
		return res, err
	}

	// Report, in hostname order.
	issued, valid, adopted := []string{}, []string{}, []string{}
	skipped, kept := map[string]string{}, map[string]string{}
	changed := len(recovered) > 0 || timer != ""
	if timer != "" {
		res.Changes = append(res.Changes, timer)
	}
	for _, h := range hosts {
		o := results[h]
		switch o.kind {
		case "valid":
			valid = append(valid, h)
		case "adopted":
			adopted = append(adopted, h)
			changed = true
			res.Changes = append(res.Changes, verb(env, "adopted ")+h+" ("+o.reason+")")
		case "issued":
			issued = append(issued, h)
			changed = true
			res.Changes = append(res.Changes, verb(env, "issued ")+h)
		case "kept":
			kept[h] = o.reason
		default:
			skipped[h] = o.reason
			res.Changes = append(res.Changes, "skipped "+h+": "+o.reason)
		}
		if env.Report != nil && !env.DryRun {
			if o.kind == "skipped" {
				env.Report.SkipHost(h, o.reason)
			} else {
				env.Report.Issued(h)
			}
		}
	}
	res.Detail = map[string]any{"issued": issued, "valid": valid, "adopted": adopted, "skipped": skipped, "renewalFailed": kept}
	switch {
	case changed:
		res.Status = agent.Changed
	case len(skipped) == len(hosts) && len(hosts) > 0:
		res.Status = agent.Skipped
	default:
		res.Status = agent.OK
	}
	var reasons []string
	for _, h := range hosts {
		if r, ok := kept[h]; ok {
			reasons = append(reasons, r)
		}
	}
	if len(skipped) > 0 {
		var parts []string
		for _, h := range hosts {
			if r, ok := skipped[h]; ok {
				parts = append(parts, h+": "+r)
			}
		}
		reasons = append(reasons, fmt.Sprintf("%d of %d hosts skipped: %s", len(skipped), len(hosts), strings.Join(parts, "; ")))
	}
	// Renewals: hosts that had a certificate and were ordered again.
	renewed, renewFailed := []string{}, map[string]string{}
	for _, h := range toOrder {
		if !hadCert[h] {
			continue
		}
		switch o := results[h]; o.kind {
		case "issued", "adopted":
			renewed = append(renewed, h)
		default:
			renewFailed[h] = o.reason
		}
	}
	last, err := s.renewalRecord(env, &res, renewed, renewFailed)
	if err != nil {
		return res, err
	}
	if env.DryRun && len(last.Failed) > 0 {
		// status: why the last renewal (the timer's, or an apply's) failed.
		reasons = append(reasons, last.describe())
	}
	res.Reason = strings.Join(reasons, "; ")
	// A run killed after storing a certificate and before the reload left
	// the reload owed (store records it): carry it out even if nothing
	// changed this time.
	owed, err := env.IsPending(agent.ActionReloadNginx)
	if err != nil {
		return res, err
	}
	if (changed || owed) && !env.DryRun && s.Nginx != nil {
		nres, err := s.Nginx.Run(ctx, env)
		for _, c := range nres.Changes {
			res.Changes = append(res.Changes, "nginx: "+c)
		}
		if err != nil {
			return res, fmt.Errorf("certificates are in place but the nginx flip to TLS failed: %w", err)
		}
	}
	if s.RenewOnly && len(renewFailed) > 0 {
		// renew's exit status is what the timer's unit shows: a due
		// renewal that failed must fail it, not pass as a quiet reason.
		var hs []string
		for _, h := range hosts {
			if r, ok := renewFailed[h]; ok {
				hs = append(hs, h+": "+r)
			}
		}
		return res, fmt.Errorf("%d due renewals failed (the current certificates keep serving until they expire; the next renew retries): %s",
			len(hs), strings.Join(hs, "; "))
	}
	return res, nil
}

// RenewalRecord is the host path of the last renewal attempt's outcome,
// which status reports.
func RenewalRecord(stateDir string) string {
	return path.Join(agent.AgentDir(stateDir), "renewal.json")
}

type renewal struct {
	Time    time.Time         `json:"time"`
	Command string            `json:"command"` // renew or apply
	Renewed []string          `json:"renewed"`
	Failed  map[string]string `json:"failed"`
}

func (r renewal) describe() string {
	var hs []string
	for h := range r.Failed {
		hs = append(hs, h)
	}
	sort.Strings(hs)
	var parts []string
	for _, h := range hs {
		parts = append(parts, h+": "+r.Failed[h])
	}
	return fmt.Sprintf("the last renewal (%s at %s) failed for %d hosts: %s", r.Command, r.Time.UTC().Format(time.RFC3339), len(hs), strings.Join(parts, "; "))
}

// renewalRecord returns the last renewal record, after recording this
// run's renewals when it attempted any (a run that renews nothing writes
// nothing, so a no-op apply stays one).
func (s *Step) renewalRecord(env *agent.Env, res *agent.Result, renewed []string, failed map[string]string) (renewal, error) {
	var last renewal
	p := RenewalRecord(env.Spec.StateDir)
	if _, err := fsx.ReadJSON(env.Root, p, &last); err != nil {
		last = renewal{} // unreadable: as if absent; the next renewal rewrites it
	}
	if env.DryRun || len(renewed)+len(failed) == 0 {
		return last, nil
	}
	cmd := "apply"
	if s.RenewOnly {
		cmd = "renew"
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	rec := renewal{Time: now(), Command: cmd, Renewed: renewed, Failed: failed}
	owner, err := env.Owner("", "")
	if err != nil {
		return last, err
	}
	if _, err := env.EnsureDir(nil, agent.AgentDir(env.Spec.StateDir), 0o700, owner); err != nil {
		return last, err
	}
	b, _ := json.MarshalIndent(rec, "", "  ")
	if _, err := env.WriteFile(nil, p, append(b, '\n'), 0o600, owner); err != nil {
		return last, err
	}
	return rec, nil
}

func verb(env *agent.Env, v string) string {
	if env.DryRun {
		return "would be " + v
	}
	return v
}

// disableCertbotTimer disables and stops the certbot package's renewal
// timer once certificates adopted from certbot are in use: certbot would
// keep renewing its own copies, spending the CA's rate limits and racing
// the agent on the webroot. A timer that is absent, disabled and stopped
// is left alone, so this happens once. It returns the change line.
func (s *Step) disableCertbotTimer(ctx context.Context, env *agent.Env, fromCertbot bool) (string, error) {
	if !fromCertbot {
		return "", nil
	}
	on, err := env.Sys.IsEnabled(ctx, CertbotTimer)
	if err != nil {
		return "", err
	}
	active, err := env.Sys.IsActive(ctx, CertbotTimer)
	if err != nil {
		return "", err
	}
	if !on && !active {
		return "", nil
	}
	if env.DryRun {
		return "would disable and stop " + CertbotTimer + " (the agent renews the adopted certificates)", nil
	}
	if err := env.Sys.Systemctl(ctx, "disable", "--now", CertbotTimer); err != nil {
		return "", fmt.Errorf("certbot's certificates are adopted, but disabling its renewal timer failed (run systemctl disable --now %s): %w", CertbotTimer, err)
	}
	return "disabled and stopped " + CertbotTimer + " (the agent renews the adopted certificates)", nil
}

// adopt copies an adopted host's certbot certificate into the agent's layout.
func (s *Step) adopt(env *agent.Env, host, fullchain, privkey string) error {
	if env.DryRun {
		return nil
	}
	fc, err := os.ReadFile(fullchain)
	if err != nil {
		return err
	}
	pk, err := os.ReadFile(privkey)
	if err != nil {
		return err
	}
	return s.store(env, host, fc, pk, meta{Source: "certbot"})
}

// store replaces one host's key, chain and meta as a unit (fsx.ReplaceDir):
// a crash leaves the previous pair or the new one at the paths nginx
// serves, never a key of one with the chain of the other.
func (s *Step) store(env *agent.Env, host string, fullchain, privkey []byte, m meta) error {
	owner, err := env.Owner("", "")
	if err != nil {
		return err
	}
	// nginx serves these paths: it owes a reload once they change.
	if err := env.Intend(agent.ActionReloadNginx); err != nil {
		return err
	}
	b, _ := json.Marshal(m)
	fc, pk := nginx.CertFiles(host)
	// meta.json last: a staged set is complete, so recoverable, once it is there.
	return env.ReplaceDir(nil, path.Dir(fc), []fsx.File{
		{Name: path.Base(pk), Data: privkey, Mode: 0o600},
		{Name: path.Base(fc), Data: fullchain, Mode: 0o644},
		{Name: path.Base(metaFile(path.Dir(fc))), Data: append(b, '\n'), Mode: 0o644},
	}, 0o700, owner)
}

// recoverPair finishes a certificate write a killed run left staged: the
// staged pair replaces the current one when it is complete, valid for host
// and outlives it. It reports whether the pair nginx serves changed.
func recoverPair(env *agent.Env, host string) (bool, error) {
	fc, _ := nginx.CertFiles(host)
	return fsx.RecoverDir(env.Root, path.Dir(fc), func(cand, cur string) bool {
		c, err := readCertDir(cand, host)
		if err != nil || readMeta(metaFile(cand)).Source == "" {
			return false
		}
		if cur == "" {
			return true
		}
		old, err := readCertDir(cur, host)
		return err != nil || c.NotAfter.After(old.NotAfter)
	})
}

// order checks DNS and the self-probe, then orders, for each host, with at
// most Concurrency hosts in flight. Per-host failures become skips.
func (s *Step) order(ctx context.Context, env *agent.Env, res *agent.Result, hosts []string, set func(string, outcome)) error {
	sp := env.Spec
	u, accs, err := loadUser(env, res, sp.ACME.Directory, sp.ACME.Email)
	if err != nil {
		return err
	}
	// acct guards the account URL: a re-registration replaces it while
	// other workers order. Each client is built from a snapshot.
	var acct sync.Mutex
	current := func() *user {
		acct.Lock()
		defer acct.Unlock()
		return &user{email: u.email, key: u.key, reg: u.reg}
	}
	newClient := func(cu *user) (*lego.Client, error) {
		cfg := lego.NewConfig(cu)
		cfg.CADirURL = sp.ACME.Directory
		cfg.UserAgent = "agentkeys-hostagent"
		if s.HTTPClient != nil {
			cfg.HTTPClient = s.HTTPClient
		}
		// A copy per client: lego wraps the client's Transport in place.
		cfg.HTTPClient = withPollHint(cfg.HTTPClient)
		c, err := lego.NewClient(cfg)
		if err != nil {
			return nil, fmt.Errorf("ACME directory %s: %w", sp.ACME.Directory, err)
		}
		wr := webroot{dir: env.Path(path.Join(sp.Nginx.Webroot, ".well-known", "acme-challenge"))}
		if err := c.Challenge.SetHTTP01Provider(wr); err != nil {
			return nil, err
		}
		return c, nil
	}
	// registerKey registers the account key (again) and persists its URL.
	registerKey := func(r *agent.Result) (string, error) {
		c, err := newClient(&user{email: u.email, key: u.key}) // no kid: newAccount is signed with the key itself
		if err != nil {
			return "", err
		}
		loc, err := register(ctx, c.Registration, u)
		if err != nil {
			return "", err
		}
		u.reg = &acme.ExtendedAccount{Location: loc}
		accs[sp.ACME.Directory] = loc
		return loc, saveAccounts(env, r, accs)
	}
	var notes []string
	reRegistered := false
	// reRegister runs when the CA answered accountDoesNotExist for stale:
	// once per run, the same key is registered again (the key is what
	// identifies this host to the CA; a new URL is all that is lost).
	reRegister := func(stale string) error {
		acct.Lock()
		defer acct.Unlock()
		if u.reg != nil && u.reg.Location != stale {
			return nil // another worker already did
		}
		if reRegistered {
			return fmt.Errorf("the CA does not know the account %s registered moments ago", stale)
		}
		reRegistered = true
		loc, err := registerKey(nil) // not res: workers run concurrently
		if err != nil {
			return fmt.Errorf("re-registering the ACME account the CA forgot: %w", err)
		}
		env.Logf("certificates: the CA no longer knew account %s; re-registered the same key as %s", stale, loc)
		notes = append(notes, fmt.Sprintf("re-registered the ACME account at %s with the same key (the CA no longer knew %s)", sp.ACME.Directory, stale))
		return nil
	}
	probeBase := sp.ACME.ProbeBase
	if probeBase == "" {
		probeBase = fmt.Sprintf("http://127.0.0.1:%d", sp.Nginx.HTTPPort)
	}
	wr := webroot{dir: env.Path(path.Join(sp.Nginx.Webroot, ".well-known", "acme-challenge"))}

	// Gate every host first (cheap), so the account is registered only when
	// something will really be ordered.
	var ready []string
	for _, h := range hosts {
		if r, err := checkDNS(ctx, sp.ACME.Resolver, h, sp.PublicIP); err != nil {
			return err
		} else if r != "" {
			set(h, outcome{kind: "skipped", reason: r})
			continue
		}
		if r := probe(ctx, wr, probeBase, h); r != "" {
			set(h, outcome{kind: "skipped", reason: r})
			continue
		}
		ready = append(ready, h)
	}
	if len(ready) == 0 {
		return nil
	}
	if u.reg == nil {
		if _, err := registerKey(res); err != nil {
			return err
		}
	}

	n := s.Concurrency
	if n <= 0 {
		n = len(ready)
	}
	if n > len(ready) {
		n = len(ready)
	}
	jobs := make(chan string)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cu := current()
			c, err := newClient(cu)
			if err != nil {
				for h := range jobs {
					set(h, outcome{kind: "skipped", reason: err.Error()})
				}
				return
			}
			for h := range jobs {
				o, gone := s.orderOne(ctx, env, c, h)
				if gone {
					// The CA forgot the account: register again, retry once.
					if err := reRegister(cu.reg.Location); err != nil {
						set(h, outcome{kind: "skipped", reason: oneLine(err.Error())})
						continue
					}
					cu = current()
					if c, err = newClient(cu); err != nil {
						set(h, outcome{kind: "skipped", reason: err.Error()})
						continue
					}
					o, _ = s.orderOne(ctx, env, c, h)
				}
				set(h, o)
			}
		}()
	}
	for _, h := range ready {
		jobs <- h
	}
	close(jobs)
	wg.Wait()
	res.Changes = append(res.Changes, notes...)
	return nil
}

// orderOne orders and stores h's certificate; gone reports that the CA no
// longer knows the account the client signs with.
func (s *Step) orderOne(ctx context.Context, env *agent.Env, c *lego.Client, h string) (o outcome, gone bool) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	env.CountACMEOrder()
	env.Logf("certificates: ordering %s", h)
	r, err := c.Certificate.Obtain(ctx, certificate.ObtainRequest{
		Domains: []string{h},
		Bundle:  true,
		KeyType: certcrypto.EC256,
	})
	if err != nil {
		return outcome{kind: "skipped", reason: "ACME order failed: " + oneLine(err.Error())}, accountGone(err)
	}
	if err := s.store(env, h, r.Certificate, r.PrivateKey, meta{Source: "acme", Directory: env.Spec.ACME.Directory}); err != nil {
		return outcome{kind: "skipped", reason: "storing the issued certificate failed: " + err.Error()}, false
	}
	return outcome{kind: "issued"}, false
}

// accountGone recognises the CA's accountDoesNotExist problem (RFC 8555
// 6.7), which it returns for a request signed with an account URL it does
// not know: a CA reset, a test CA restarted, an account purged.
func accountGone(err error) bool {
	var pd *acme.ProblemDetails
	if errors.As(err, &pd) && pd.Type == acme.AccountDoesNotExistErrorType {
		return true
	}
	return strings.Contains(err.Error(), acme.AccountDoesNotExistErrorType)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
