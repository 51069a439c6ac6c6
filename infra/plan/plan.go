// Package plan runs the real Pulumi program of a stack under the SDK's mock
// engine, as a preview (dry run), and records every resource it declares:
// type, names, parent, dependencies, options and inputs. It backs the offline
// `make plan`, the isolation check and the program's tests.
package plan

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"sync"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/internals"
)

// Project is the Pulumi project name.
const Project = "agentkeys"

// Unknown marks a value only the cloud can assign; Secret marks a secret.
const (
	Unknown = "[unknown]"
	Secret  = "[secret]"
)

// Resource is one declared resource.
type Resource struct {
	Type         string         `json:"type"`
	Name         string         `json:"name"`
	URN          string         `json:"urn"`
	Parent       string         `json:"parent,omitempty"`
	Custom       bool           `json:"custom"`
	Protect      bool           `json:"protect"`
	RetainOnDel  bool           `json:"retainOnDelete,omitempty"`
	DeletedWith  string         `json:"deletedWith,omitempty"`
	ImportID     string         `json:"importId,omitempty"`
	Dependencies []string       `json:"dependencies"`
	Inputs       map[string]any `json:"inputs"`
	// raw keeps secret and unknown markers for programmatic checks.
	raw resource.PropertyMap
}

// Output is one stack output.
type Output struct {
	Value  any  `json:"value"`
	Known  bool `json:"known"`
	Secret bool `json:"secret"`
}

// Plan is what one stack declares.
type Plan struct {
	Stack     string
	Resources []*Resource
	Outputs   map[string]Output
	Invokes   []string // invoke tokens the program called, in order
	Notes     []string // what the plan assumed
	// View is "" for the changes a run makes, or ViewConverged for the state
	// a stack converges to: every step is "same" and the printer shows each
	// policy document.
	View string
}

// ViewConverged marks a plan of the converged state.
const ViewConverged = "converged"

// Declare is the program under plan: it declares resources and returns the
// stack outputs (the real entry point exports the same map).
type Declare func(ctx *pulumi.Context) (map[string]pulumi.Input, error)

// Answer answers one invoke offline.
type Answer func(args resource.PropertyMap) (resource.PropertyMap, error)

// Options tune one plan run.
type Options struct {
	// Config is the stack config as Pulumi passes it ("agentkeys:zone" -> value).
	Config     map[string]string
	SecretKeys []string
	// Answers maps invoke tokens to offline answers; an unasked token fails the plan.
	Answers map[string]Answer
	// Preview runs as a dry run (unknown cloud values stay unknown); false runs
	// as an update where the mock returns inputs as state.
	Preview bool
	// State adds cloud-assigned outputs for resources of a type (tests use it to
	// play the cloud: an allocated address, DKIM tokens, a healthy host).
	State func(typ, name string, inputs resource.PropertyMap) resource.PropertyMap
}

var envMu sync.Mutex // the SDK reads config and dry-run from the process environment

// Run plans stack with the given program.
func Run(stack string, program Declare, o Options) (*Plan, error) {
	envMu.Lock()
	defer envMu.Unlock()
	cfg, _ := json.Marshal(o.Config)
	sk, _ := json.Marshal(o.SecretKeys)
	restore := setenv(map[string]string{
		"PULUMI_CONFIG":             string(cfg),
		"PULUMI_CONFIG_SECRET_KEYS": string(sk),
		"PULUMI_DRY_RUN":            fmt.Sprint(o.Preview),
	})
	defer restore()

	m := &mocks{opts: o, stack: stack}
	p := &Plan{Stack: stack, Outputs: map[string]Output{}}
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		outs, err := program(ctx)
		if err != nil {
			return err
		}
		for k, in := range outs {
			r, err := internals.UnsafeAwaitOutput(ctx.Context(), pulumi.ToOutput(in))
			if err != nil {
				return fmt.Errorf("output %s: %w", k, err)
			}
			p.Outputs[k] = Output{Value: r.Value, Known: r.Known, Secret: r.Secret}
		}
		return nil
	}, pulumi.WithMocks(Project, stack, m))
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p.Resources = m.resources
	p.Invokes = m.invokes
	sort.SliceStable(p.Resources, func(i, j int) bool { return p.Resources[i].URN < p.Resources[j].URN })
	return p, nil
}

func setenv(vals map[string]string) func() {
	old := map[string]*string{}
	for k, v := range vals {
		if prev, ok := os.LookupEnv(k); ok {
			old[k] = &prev
		} else {
			old[k] = nil
		}
		os.Setenv(k, v)
	}
	return func() {
		for k, v := range old {
			if v == nil {
				os.Unsetenv(k)
			} else {
				os.Setenv(k, *v)
			}
		}
	}
}

// previewComputed lists output properties a preview cannot know although the
// program set the enclosing input (the mock would otherwise echo the input).
var previewComputed = map[string][]string{
	"aws:sesv2/emailIdentity:EmailIdentity": {"dkimSigningAttributes"},
}

// previewMarked lists cloud-assigned outputs that flow into secret inputs (the
// SSH connection): the mock engine cannot carry an unknown inside a secret, so
// a preview carries the Unknown marker string instead, which prints the same.
var previewMarked = map[string][]string{
	"aws:ec2/eip:Eip": {"publicIp"},
}

type mocks struct {
	opts      Options
	stack     string
	mu        sync.Mutex
	resources []*Resource
	invokes   []string
}

func (m *mocks) NewResource(a pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	r := &Resource{Type: a.TypeToken, Name: a.Name, Custom: a.Custom, ImportID: a.ID, Inputs: map[string]any{}}
	inputs := a.Inputs
	if rpc := a.RegisterRPC; rpc != nil {
		r.Parent = rpc.GetParent()
		r.Protect = rpc.GetProtect()
		r.RetainOnDel = rpc.GetRetainOnDelete()
		r.DeletedWith = rpc.GetDeletedWith()
		r.ImportID = rpc.GetImportId()
		deps := map[string]bool{}
		for _, d := range rpc.GetDependencies() {
			deps[d] = true
		}
		for _, pd := range rpc.GetPropertyDependencies() {
			for _, d := range pd.GetUrns() {
				deps[d] = true
			}
		}
		for d := range deps {
			r.Dependencies = append(r.Dependencies, d)
		}
		sort.Strings(r.Dependencies)
		// Re-read the inputs keeping unknowns, which the mock monitor drops.
		if full, err := plugin.UnmarshalProperties(rpc.GetObject(), plugin.MarshalOptions{KeepUnknowns: true, KeepSecrets: true, KeepResources: true}); err == nil {
			inputs = full
		}
		r.URN = m.urn(rpc.GetParent(), a.TypeToken, a.Name)
	}
	if r.Dependencies == nil {
		r.Dependencies = []string{}
	}
	r.raw = inputs
	r.Inputs = Printable(inputs)
	m.mu.Lock()
	m.resources = append(m.resources, r)
	m.mu.Unlock()

	state := a.Inputs.Copy()
	if m.opts.Preview {
		// Nested outputs the cloud computes stay unknown in a preview.
		for _, k := range previewComputed[a.TypeToken] {
			state[resource.PropertyKey(k)] = resource.MakeComputed(resource.NewStringProperty(""))
		}
		for _, k := range previewMarked[a.TypeToken] {
			state[resource.PropertyKey(k)] = resource.NewStringProperty(Unknown)
		}
	}
	if m.opts.State != nil {
		for k, v := range m.opts.State(a.TypeToken, a.Name, a.Inputs) {
			state[k] = v
		}
	}
	id := a.ID
	if id == "" && a.Custom && !m.opts.Preview {
		// An update plays the cloud: the physical name is the id, as AWS does.
		if id = r.PhysicalName(); id == "" {
			id = a.Name + "-id"
		}
	}
	return id, state, nil
}

func (m *mocks) Call(a pulumi.MockCallArgs) (resource.PropertyMap, error) {
	m.mu.Lock()
	m.invokes = append(m.invokes, a.Token)
	m.mu.Unlock()
	ans, ok := m.opts.Answers[a.Token]
	if !ok {
		return nil, fmt.Errorf("no offline answer for invoke %s: add one to the plan's lookups", a.Token)
	}
	return ans(a.Args)
}

// urn mirrors the mock monitor's URN scheme so parents and dependencies match.
func (m *mocks) urn(parent, typ, name string) string {
	parentType := tokens.Type("")
	if p := resource.URN(parent); p != "" && p.QualifiedType() != resource.RootStackType {
		parentType = p.QualifiedType()
	}
	return string(resource.NewURN(tokens.QName(m.stack), tokens.PackageName(Project), parentType, tokens.Type(typ), name))
}
