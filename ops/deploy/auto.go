package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/events"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optdestroy"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/opthistory"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optrefresh"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	"github.com/pulumi/pulumi/sdk/v3/go/common/workspace"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"gopkg.in/yaml.v3"

	"github.com/agentkeys/agentkeys-infra/infra/config"
)

// Program returns the inline program of one stack, given its config as the
// engine holds it (secrets decrypted).
type Program func(stack string, cfg *config.Raw) pulumi.RunFunc

// CLIEnv names the Pulumi CLI to use instead of <project>/bin/pulumi or PATH.
const CLIEnv = "AGENTKEYS_PULUMI"

// AutoEngine is the real Engine: the Automation API with the program
// compiled into this binary (an inline program: no Go language host, no
// `go build` per run). Each operation runs in its own temporary workspace
// holding a copy of the project's Pulumi.yaml and Pulumi.<stack>.yaml, so
// no operation rewrites a committed stack file and parallel stacks share no
// workspace state. The backend is the CLI's (PULUMI_BACKEND_URL or its login).
type AutoEngine struct {
	ProjectDir string  // holds Pulumi.yaml and Pulumi.<stack>.yaml
	Program    Program // the inline program
	// CLI is the pulumi binary ("" = AGENTKEYS_PULUMI, else
	// <ProjectDir>/bin/pulumi when present, else pulumi on PATH).
	CLI string
	// PulumiHome is the CLI's home with its plugins ("" = PULUMI_HOME, else
	// <ProjectDir>/.pulumi-home when present, else the CLI's default).
	PulumiHome string
	Env        map[string]string // extra environment for the CLI
	Progress   io.Writer         // engine progress (secrets masked by Pulumi); nil = discard
}

func (e AutoEngine) progress() io.Writer {
	if e.Progress == nil {
		return io.Discard
	}
	return e.Progress
}

func (e AutoEngine) command() (auto.PulumiCommand, error) {
	cli := e.CLI
	if cli == "" {
		cli = os.Getenv(CLIEnv)
	}
	if cli == "" {
		if p := filepath.Join(e.ProjectDir, "bin", "pulumi"); isFile(p) {
			cli = p
		}
	}
	if cli == "" {
		return auto.NewPulumiCommand(nil) // PATH
	}
	abs, err := filepath.Abs(cli)
	if err != nil {
		return nil, err
	}
	// The Automation API runs <Root>/bin/pulumi.
	if filepath.Base(filepath.Dir(abs)) != "bin" || filepath.Base(abs) != "pulumi" {
		return nil, fmt.Errorf("%s: the Pulumi CLI must be a file named pulumi in a bin directory (…/bin/pulumi)", cli)
	}
	c, err := auto.NewPulumiCommand(&auto.PulumiCommandOptions{Root: filepath.Dir(filepath.Dir(abs))})
	if err != nil {
		return nil, fmt.Errorf("the Pulumi CLI %s: %w (make deps builds bin/pulumi)", abs, err)
	}
	return c, nil
}

func (e AutoEngine) home() string {
	if e.PulumiHome != "" {
		return e.PulumiHome
	}
	if h := os.Getenv("PULUMI_HOME"); h != "" {
		return h
	}
	if p := filepath.Join(e.ProjectDir, ".pulumi-home"); isDir(p) {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	return ""
}

func isFile(p string) bool { fi, err := os.Stat(p); return err == nil && fi.Mode().IsRegular() }
func isDir(p string) bool  { fi, err := os.Stat(p); return err == nil && fi.IsDir() }

// stackFile is what a stack file says about its secrets.
type stackFile struct {
	raw             []byte
	SecretsProvider string `yaml:"secretsprovider"`
	EncryptedKey    string `yaml:"encryptedkey"`
	EncryptionSalt  string `yaml:"encryptionsalt"`
}

// cloudProvider reports whether the file names a KMS-style provider.
func (f stackFile) cloudProvider() bool {
	p := f.SecretsProvider
	return p != "" && p != "passphrase" && p != "default" && !strings.HasPrefix(p, "passphrase:")
}

// workspace makes a private workspace for stack: Pulumi.yaml and a byte
// copy of Pulumi.<stack>.yaml in a temporary directory.
func (e AutoEngine) workspace(ctx context.Context, stack string) (auto.Workspace, *stackFile, func(), error) {
	proj, err := os.ReadFile(filepath.Join(e.ProjectDir, "Pulumi.yaml"))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("project %s: %w", e.ProjectDir, err)
	}
	var p struct {
		Name string `yaml:"name"`
	}
	if err := yaml.Unmarshal(proj, &p); err != nil || p.Name == "" {
		return nil, nil, nil, fmt.Errorf("%s: no project name (%v)", filepath.Join(e.ProjectDir, "Pulumi.yaml"), err)
	}
	dir, err := os.MkdirTemp("", "agentkeys-deploy-")
	if err != nil {
		return nil, nil, nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	var sf *stackFile
	if stack != "" {
		b, err := os.ReadFile(filepath.Join(e.ProjectDir, "Pulumi."+stack+".yaml"))
		if err != nil {
			cleanup()
			return nil, nil, nil, fmt.Errorf("stack %s: %w", stack, err)
		}
		sf = &stackFile{raw: b}
		if err := yaml.Unmarshal(b, sf); err != nil {
			cleanup()
			return nil, nil, nil, fmt.Errorf("Pulumi.%s.yaml: %w", stack, err)
		}
		if err := os.WriteFile(filepath.Join(dir, "Pulumi."+stack+".yaml"), b, 0o600); err != nil {
			cleanup()
			return nil, nil, nil, err
		}
	}
	cmd, err := e.command()
	if err != nil {
		cleanup()
		return nil, nil, nil, err
	}
	env := map[string]string{"PULUMI_SKIP_UPDATE_CHECK": "true"}
	for k, v := range e.Env {
		env[k] = v
	}
	opts := []auto.LocalWorkspaceOption{auto.WorkDir(dir), auto.Pulumi(cmd), auto.EnvVars(env),
		auto.Project(workspace.Project{Name: tokens.PackageName(p.Name), Runtime: workspace.NewProjectRuntimeInfo("go", nil)})}
	if h := e.home(); h != "" {
		opts = append(opts, auto.PulumiHome(h))
	}
	if sf != nil && sf.SecretsProvider != "" {
		// A stack created here gets the provider its file names.
		opts = append(opts, auto.SecretsProvider(sf.SecretsProvider))
	}
	ws, err := auto.NewLocalWorkspace(ctx, opts...)
	if err != nil {
		cleanup()
		return nil, nil, nil, err
	}
	return ws, sf, cleanup, nil
}

// exists reports whether the backend has stack.
func exists(ctx context.Context, ws auto.Workspace, stack string) (bool, error) {
	list, err := ws.ListStacks(ctx)
	if err != nil {
		return false, err
	}
	for _, s := range list {
		if s.Name == stack || strings.HasSuffix(s.Name, "/"+stack) {
			return true, nil
		}
	}
	return false, nil
}

// deployment is the part of an exported state this engine reads.
type deployment struct {
	SecretsProviders *struct {
		Type  string `json:"type"`
		State struct {
			URL          string `json:"url"`
			EncryptedKey string `json:"encryptedkey"`
		} `json:"state"`
	} `json:"secrets_providers"`
	Resources []struct {
		URN     string `json:"urn"`
		Type    string `json:"type"`
		Protect bool   `json:"protect"`
	} `json:"resources"`
}

func export(ctx context.Context, ws auto.Workspace, stack string) (*deployment, error) {
	u, err := ws.ExportStack(ctx, stack)
	if err != nil {
		return nil, fmt.Errorf("exporting the state of %s: %w", stack, err)
	}
	var d deployment
	if len(u.Deployment) > 0 {
		if err := json.Unmarshal(u.Deployment, &d); err != nil {
			return nil, fmt.Errorf("state of %s: %w", stack, err)
		}
	}
	return &d, nil
}

// stack selects or creates stack in ws with program, with the stack's
// config read back from the engine.
func (e AutoEngine) stack(ctx context.Context, name string) (auto.Stack, func(), error) {
	ws, sf, cleanup, err := e.workspace(ctx, name)
	if err != nil {
		return auto.Stack{}, nil, err
	}
	fail := func(err error) (auto.Stack, func(), error) {
		cleanup()
		return auto.Stack{}, nil, err
	}
	// A stack file without its data key (never `pulumi config set --secret`
	// here): take the key the state was written with, so every run of this
	// stack uses one key instead of minting one into a throwaway copy.
	if sf.cloudProvider() && sf.EncryptedKey == "" {
		ok, err := exists(ctx, ws, name)
		if err != nil {
			return fail(err)
		}
		if ok {
			d, err := export(ctx, ws, name)
			if err != nil {
				return fail(err)
			}
			if sp := d.SecretsProviders; sp != nil && sp.Type == "cloud" {
				if sp.State.URL != sf.SecretsProvider {
					return fail(fmt.Errorf("stack %s: its state is encrypted by %s but Pulumi.%s.yaml names %s; run `pulumi stack change-secrets-provider` or fix the file", name, sp.State.URL, name, sf.SecretsProvider))
				}
				raw := append(append([]byte{}, sf.raw...), []byte(fmt.Sprintf("\nencryptedkey: %s\n", sp.State.EncryptedKey))...)
				if err := os.WriteFile(filepath.Join(ws.WorkDir(), "Pulumi."+name+".yaml"), raw, 0o600); err != nil {
					return fail(err)
				}
			}
		}
	}
	s, err := auto.UpsertStack(ctx, name, ws)
	if err != nil {
		return fail(fmt.Errorf("stack %s: %w", name, err))
	}
	all, err := s.GetAllConfig(ctx)
	if err != nil {
		return fail(fmt.Errorf("stack %s: reading its config: %w", name, err))
	}
	raw := &config.Raw{Values: map[string]string{}, SecretsProvider: sf.SecretsProvider}
	for k, v := range all {
		raw.Values[k] = v.Value
		if v.Secret {
			raw.SecretKeys = append(raw.SecretKeys, k)
		}
	}
	sort.Strings(raw.SecretKeys)
	ws.SetProgram(e.Program(name, raw))
	return s, cleanup, nil
}

// collect gathers step events until the engine closes the channel.
func collect() (chan events.EngineEvent, func() []Step) {
	ch := make(chan events.EngineEvent)
	done := make(chan struct{})
	var steps []Step
	go func() {
		defer close(done)
		for ev := range ch {
			if ev.ResourcePreEvent != nil {
				m := ev.ResourcePreEvent.Metadata
				steps = append(steps, Step{Op: string(m.Op), URN: m.URN, Type: m.Type})
			}
		}
	}()
	return ch, func() []Step {
		// The engine closes the channel when its stream ends; an operation that
		// failed before streaming may never do so.
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		return steps
	}
}

func stepCounts(steps []Step) map[string]int {
	m := map[string]int{}
	for _, s := range steps {
		m[s.Op]++
	}
	return m
}

func fromSummary(rc *map[string]int, steps []Step) Result {
	r := Result{Steps: steps, Counts: stepCounts(steps)}
	if rc != nil {
		r.Counts = *rc
	}
	return r
}

func outputs(m auto.OutputMap) map[string]Output {
	out := map[string]Output{}
	for k, v := range m {
		out[k] = Output{Value: v.Value, Secret: v.Secret}
	}
	return out
}

// Preview runs pulumi preview.
func (e AutoEngine) Preview(ctx context.Context, name string) (Result, error) {
	s, cleanup, err := e.stack(ctx, name)
	if err != nil {
		return Result{}, err
	}
	defer cleanup()
	ch, wait := collect()
	res, err := s.Preview(ctx, optpreview.EventStreams(ch), optpreview.ProgressStreams(e.progress()))
	steps := wait()
	if err != nil {
		return Result{Steps: steps}, engineError(err)
	}
	r := Result{Steps: steps, Counts: map[string]int{}}
	for op, n := range res.ChangeSummary {
		r.Counts[string(op)] = n
	}
	return r, nil
}

// Up runs pulumi up.
func (e AutoEngine) Up(ctx context.Context, name string) (Result, error) {
	s, cleanup, err := e.stack(ctx, name)
	if err != nil {
		return Result{}, err
	}
	defer cleanup()
	ch, wait := collect()
	res, err := s.Up(ctx, optup.EventStreams(ch), optup.ProgressStreams(e.progress()))
	steps := wait()
	r := fromSummary(res.Summary.ResourceChanges, steps)
	r.Outputs = outputs(res.Outputs)
	return r, engineError(err)
}

// Refresh runs pulumi refresh.
func (e AutoEngine) Refresh(ctx context.Context, name string) (Result, error) {
	s, cleanup, err := e.stack(ctx, name)
	if err != nil {
		return Result{}, err
	}
	defer cleanup()
	ch, wait := collect()
	res, err := s.Refresh(ctx, optrefresh.EventStreams(ch), optrefresh.ProgressStreams(e.progress()))
	steps := wait()
	return fromSummary(res.Summary.ResourceChanges, steps), engineError(err)
}

// Destroy runs pulumi destroy.
func (e AutoEngine) Destroy(ctx context.Context, name string) (Result, error) {
	s, cleanup, err := e.stack(ctx, name)
	if err != nil {
		return Result{}, err
	}
	defer cleanup()
	ch, wait := collect()
	res, err := s.Destroy(ctx, optdestroy.EventStreams(ch), optdestroy.ProgressStreams(e.progress()))
	steps := wait()
	return fromSummary(res.Summary.ResourceChanges, steps), engineError(err)
}

// Protected lists the URNs of the stack's protected resources (none when
// the stack does not exist).
func (e AutoEngine) Protected(ctx context.Context, name string) ([]string, error) {
	ws, _, cleanup, err := e.workspace(ctx, name)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	ok, err := exists(ctx, ws, name)
	if err != nil || !ok {
		return nil, err
	}
	d, err := export(ctx, ws, name)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range d.Resources {
		if r.Protect {
			out = append(out, r.URN)
		}
	}
	return out, nil
}

// Stacks lists the project's stacks in the backend.
func (e AutoEngine) Stacks(ctx context.Context) ([]StackInfo, error) {
	ws, _, cleanup, err := e.workspace(ctx, "")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	list, err := ws.ListStacks(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]StackInfo, 0, len(list))
	for _, s := range list {
		n := -1
		if s.ResourceCount != nil {
			n = *s.ResourceCount
		}
		out = append(out, StackInfo{Name: s.Name, Resources: n})
	}
	return out, nil
}

// LastDeploy reads the newest entry of the stack's history.
func (e AutoEngine) LastDeploy(ctx context.Context, name string) (LastDeploy, bool, error) {
	ws, _, cleanup, err := e.workspace(ctx, name)
	if err != nil {
		return LastDeploy{}, false, err
	}
	defer cleanup()
	s, err := auto.SelectStack(ctx, name, ws)
	if err != nil {
		return LastDeploy{}, false, err
	}
	h, err := s.History(ctx, 1, 1, opthistory.ShowSecrets(false))
	if err != nil || len(h) == 0 {
		return LastDeploy{}, false, err
	}
	ld := LastDeploy{Kind: h[0].Kind, Result: h[0].Result}
	when := h[0].StartTime
	if h[0].EndTime != nil {
		when = *h[0].EndTime
	}
	if t, err := time.Parse(time.RFC3339, when); err == nil {
		ld.End = t
	} else if t, err := time.Parse("2006-01-02 15:04:05.999999999 -0700 MST", when); err == nil {
		ld.End = t
	}
	return ld, true, nil
}

// engineError keeps the engine's diagnostics and drops the Automation
// API's replay of the whole progress output (stdout) from the message.
func engineError(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if i := strings.Index(msg, "\nstdout: "); i >= 0 {
		out := msg[i+len("\nstdout: "):]
		head := strings.TrimSpace(msg[:i])
		if j := strings.Index(out, "Diagnostics:"); j >= 0 {
			diag := out[j:]
			if k := strings.Index(diag, "\nResources:"); k >= 0 {
				diag = diag[:k]
			}
			return errors.New(head + "\n" + strings.TrimSpace(diag))
		}
		return errors.New(head)
	}
	return err
}
