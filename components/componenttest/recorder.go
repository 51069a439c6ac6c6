// Package componenttest records what a Pulumi program declares under the SDK's
// mock engine, so tests can assert names, inputs, parents, dependencies and
// resource options the way a preview would show them.
package componenttest

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Resource is one registered resource as the engine saw it.
type Resource struct {
	Type     string
	Name     string
	URN      string
	Parent   string // parent URN ("" for children of the stack)
	Custom   bool
	ID       string // the id the mock answered with (the import id when importing)
	ImportID string
	Protect  bool
	// Deps are the resources this one waits for: explicit DependsOn plus the
	// resources behind its input outputs.
	Deps                    []string
	PropertyDeps            map[string][]string
	Inputs                  resource.PropertyMap
	IgnoreChanges           []string
	AdditionalSecretOutputs []string
	RetainOnDelete          bool
	DeletedWith             string
}

// DependsOn reports whether r waits for the resource with URN urn, directly.
func (r Resource) DependsOn(urn string) bool {
	for _, d := range r.Deps {
		if d == urn {
			return true
		}
	}
	for _, ds := range r.PropertyDeps {
		for _, d := range ds {
			if d == urn {
				return true
			}
		}
	}
	return false
}

// Input returns input key with secrets unwrapped; ok is false when absent.
func (r Resource) Input(key string) (resource.PropertyValue, bool) {
	v, ok := r.Inputs[resource.PropertyKey(key)]
	if !ok {
		return resource.PropertyValue{}, false
	}
	return Unwrap(v), true
}

// Str returns input key as a string ("" when absent or not a string).
func (r Resource) Str(key string) string {
	v, ok := r.Input(key)
	if !ok || !v.IsString() {
		return ""
	}
	return v.StringValue()
}

// Bool returns input key as a bool (false when absent).
func (r Resource) Bool(key string) bool {
	v, ok := r.Input(key)
	return ok && v.IsBool() && v.BoolValue()
}

// Plain returns the inputs as plain Go values (secrets unwrapped).
func (r Resource) Plain() map[string]any {
	return Unwrap(resource.NewObjectProperty(r.Inputs)).Mappable().(map[string]any)
}

// Unwrap strips secret and output wrappers recursively.
func Unwrap(v resource.PropertyValue) resource.PropertyValue {
	switch {
	case v.IsSecret():
		return Unwrap(v.SecretValue().Element)
	case v.IsOutput():
		return Unwrap(v.OutputValue().Element)
	case v.IsArray():
		var out []resource.PropertyValue
		for _, e := range v.ArrayValue() {
			out = append(out, Unwrap(e))
		}
		return resource.NewArrayProperty(out)
	case v.IsObject():
		out := resource.PropertyMap{}
		for k, e := range v.ObjectValue() {
			out[k] = Unwrap(e)
		}
		return resource.NewObjectProperty(out)
	}
	return v
}

// InvokeFunc answers one invoke token.
type InvokeFunc func(args resource.PropertyMap) (resource.PropertyMap, error)

// OutputsFunc computes the provider-side outputs of a resource type; they are
// merged over its inputs to form the state the program sees.
type OutputsFunc func(r Resource) resource.PropertyMap

// Call is one recorded invoke.
type Call struct {
	Token string
	Args  resource.PropertyMap
}

// Recorder implements pulumi.MockResourceMonitor and records every
// registration and invoke. Unknown invoke tokens are errors, so a new lookup
// cannot pass a test silently.
type Recorder struct {
	Project, Stack string
	Invokes        map[string]InvokeFunc
	Outputs        map[string]OutputsFunc

	mu                sync.Mutex
	resources         []Resource
	calls             []Call
	outputsRegistered int
}

// New returns a recorder with AWS-shaped default outputs (see AWSOutputs).
func New(project, stack string) *Recorder {
	return &Recorder{Project: project, Stack: stack, Invokes: map[string]InvokeFunc{}, Outputs: AWSOutputs()}
}

// Run runs program under the mock engine with this recorder.
func (m *Recorder) Run(program pulumi.RunFunc) error {
	return pulumi.RunErr(program, pulumi.WithMocks(m.Project, m.Stack, m))
}

func (m *Recorder) urn(parent, typ, name string) string {
	parentType := tokens.Type("")
	if p := resource.URN(parent); p != "" && p.QualifiedType() != resource.RootStackType {
		parentType = p.QualifiedType()
	}
	return string(resource.NewURN(tokens.QName(m.Stack), tokens.PackageName(m.Project), parentType, tokens.Type(typ), name))
}

// NewResource records a registration and answers with inputs plus computed outputs.
func (m *Recorder) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	rpc := args.RegisterRPC
	r := Resource{Type: args.TypeToken, Name: args.Name, Custom: args.Custom, Inputs: args.Inputs, ImportID: args.ID}
	if rpc != nil {
		r.Parent = rpc.GetParent()
		r.Protect = rpc.GetProtect()
		r.Deps = rpc.GetDependencies()
		r.IgnoreChanges = rpc.GetIgnoreChanges()
		r.AdditionalSecretOutputs = rpc.GetAdditionalSecretOutputs()
		r.RetainOnDelete = rpc.GetRetainOnDelete()
		r.DeletedWith = rpc.GetDeletedWith()
		r.PropertyDeps = map[string][]string{}
		for k, v := range rpc.GetPropertyDependencies() {
			r.PropertyDeps[k] = v.GetUrns()
		}
	}
	// The stack's parent is the root stack resource; normalise to "".
	if resource.URN(r.Parent).IsValid() && resource.URN(r.Parent).QualifiedType() == resource.RootStackType {
		r.Parent = ""
	}
	r.URN = m.urn(rpc.GetParent(), r.Type, r.Name)
	r.ID = r.ImportID
	if r.ID == "" && r.Custom {
		r.ID = r.Name + "-id"
	}
	state := r.Inputs.Copy()
	if f, ok := m.Outputs[r.Type]; ok {
		for k, v := range f(r) {
			state[k] = v
		}
	}
	// The real engine keeps these outputs secret; mirror that so tests can see it.
	for _, k := range r.AdditionalSecretOutputs {
		if v, ok := state[resource.PropertyKey(k)]; ok && !v.IsSecret() {
			state[resource.PropertyKey(k)] = resource.MakeSecret(v)
		}
	}
	m.mu.Lock()
	m.resources = append(m.resources, r)
	m.mu.Unlock()
	return r.ID, state, nil
}

// Call answers an invoke from Invokes; unknown tokens fail.
func (m *Recorder) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	m.mu.Lock()
	m.calls = append(m.calls, Call{Token: args.Token, Args: args.Args})
	f, ok := m.Invokes[args.Token]
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("componenttest: no mock answer for invoke %s", args.Token)
	}
	return f(args.Args)
}

// RegisterResourceOutputs counts component output registrations.
func (m *Recorder) RegisterResourceOutputs() (*emptypb.Empty, error) {
	m.mu.Lock()
	m.outputsRegistered++
	m.mu.Unlock()
	return &emptypb.Empty{}, nil
}

// OutputsRegistered is how many times RegisterResourceOutputs was called,
// including the root stack's own call at the end of a run.
func (m *Recorder) OutputsRegistered() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.outputsRegistered
}

// Resources returns every registration in order.
func (m *Recorder) Resources() []Resource {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Resource(nil), m.resources...)
}

// Calls returns every invoke in order.
func (m *Recorder) Calls() []Call {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Call(nil), m.calls...)
}

// ByType returns the registrations of type token typ, sorted by name.
func (m *Recorder) ByType(typ string) []Resource {
	var out []Resource
	for _, r := range m.Resources() {
		if r.Type == typ {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Find returns the registration of type typ and logical name name.
func (m *Recorder) Find(typ, name string) (Resource, bool) {
	for _, r := range m.Resources() {
		if r.Type == typ && r.Name == name {
			return r, true
		}
	}
	return Resource{}, false
}

// ByURN returns the registration with the given URN.
func (m *Recorder) ByURN(urn string) (Resource, bool) {
	for _, r := range m.Resources() {
		if r.URN == urn {
			return r, true
		}
	}
	return Resource{}, false
}

// ChildrenOf returns the registrations whose parent is urn.
func (m *Recorder) ChildrenOf(urn string) []Resource {
	var out []Resource
	for _, r := range m.Resources() {
		if r.Parent == urn {
			out = append(out, r)
		}
	}
	return out
}

// Summary renders one line per resource (type, name, parent type), for
// failure messages.
func (m *Recorder) Summary() string {
	var b strings.Builder
	for _, r := range m.Resources() {
		p := ""
		if r.Parent != "" {
			p = string(resource.URN(r.Parent).Type())
		}
		fmt.Fprintf(&b, "%s %s parent=%s import=%q protect=%v\n", r.Type, r.Name, p, r.ImportID, r.Protect)
	}
	return b.String()
}
