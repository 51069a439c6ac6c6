// Package standin is the frame of the project's test stand-ins for Pulumi
// resource providers (pulumi-resource-aws, pulumi-resource-tls): a
// plugin.Provider that checks, diffs and dispatches resource operations the
// way a Terraform-bridged provider does, so the real Pulumi engine meets the
// same replace/update decisions, defaults, validation failures and secret
// outputs as with the real plugin. Types describe their schema in Type;
// each stand-in supplies the operations.
//
// Bridge behaviour followed here is from pulumi/pulumi-terraform-bridge
// (pkg/tfbridge/provider.go, schema.go): Check applies schema defaults and
// autonaming and reports validation errors as check failures; Diff compares
// the new inputs with the old state per top-level property, a ForceNew
// property replaces, an Optional+Computed property left out keeps its state;
// a replacement is delete-before-replace when an autonamed property was set
// explicitly (nameRequiresDeleteBeforeReplace); Read drops a resource that
// no longer exists (empty ID) and rebuilds inputs from the live state.
package standin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/blang/semver"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
)

// Props is a property map with secrets and unknowns still wrapped.
type Props = resource.PropertyMap

// Type is one resource type's schema and operations.
type Type struct {
	Token string
	// Inputs are the top-level input properties the type takes.
	Inputs []string
	// Required inputs (a check failure when absent; the real provider's
	// "Missing required argument").
	Required []string
	// ForceNew inputs replace the resource when they change.
	ForceNew []string
	// OptionalComputed inputs keep their state value when left out.
	OptionalComputed []string
	// Sets are array inputs compared without order (Terraform TypeSet).
	Sets []string
	// Defaults fill absent inputs (Terraform schema Default).
	Defaults map[string]resource.PropertyValue
	// AutoName is the input the bridge autonames when absent ("" = none),
	// with the name's maximum length.
	AutoName    string
	AutoNameMax int
	// Equivalent says whether two values of a property mean the same (the
	// provider's DiffSuppressFunc): a policy document re-serialised by AWS, a
	// URL without its scheme.
	Equivalent map[string]func(a, b resource.PropertyValue) bool
	// Validate reports invalid inputs; it checks only known values (Known).
	Validate func(in Props) []plugin.CheckFailure
	// Computed are the output-only properties, unknown in a preview.
	Computed []string
	// Secret outputs are always returned as secrets (Terraform Sensitive).
	Secret []string
	// LiveWins are inputs whose state is always the live value (an object
	// with computed fields, compared to the input by Equivalent), and
	// NestedComputed their computed fields, unknown in a preview.
	LiveWins       []string
	NestedComputed map[string][]string

	// Create makes the resource from plain inputs and returns its ID and its
	// live properties.
	Create func(ctx context.Context, in Props) (string, Props, error)
	// Read returns the live properties of id, nil when it does not exist.
	Read func(ctx context.Context, id string, state Props) (Props, error)
	// Update changes id from olds to news (changed lists the properties).
	Update func(ctx context.Context, id string, olds, news Props, changed []string) (Props, error)
	// Delete removes id; a resource already gone is not an error.
	Delete func(ctx context.Context, id string, state Props) error
}

// Invoke is one function (data source).
type Invoke func(ctx context.Context, args Props) (Props, error)

// Provider serves a set of types and invokes.
type Provider struct {
	plugin.UnimplementedProvider

	Name    string
	Version semver.Version
	Types   map[string]*Type
	Invokes map[string]Invoke
	// OnConfigure receives the provider's configuration (plain values).
	OnConfigure func(ctx context.Context, config Props) error

	mu         sync.Mutex
	configured bool
}

// New returns a provider of name and version serving types and invokes.
func New(name, version string, types []*Type, invokes map[string]Invoke) *Provider {
	p := &Provider{Name: name, Version: semver.MustParse(version), Types: map[string]*Type{}, Invokes: invokes}
	for _, t := range types {
		p.Types[t.Token] = t
	}
	return p
}

func (p *Provider) Close() error { return nil }

func (p *Provider) Pkg() tokens.Package { return tokens.Package(p.Name) }

func (p *Provider) GetPluginInfo(context.Context) (plugin.PluginInfo, error) {
	v := p.Version
	return plugin.PluginInfo{Version: &v}, nil
}

func (p *Provider) SignalCancellation(context.Context) error { return nil }

func (p *Provider) CheckConfig(_ context.Context, req plugin.CheckConfigRequest) (plugin.CheckConfigResponse, error) {
	return plugin.CheckConfigResponse{Properties: req.News}, nil
}

// DiffConfig reports a changed configuration as an update of the provider:
// the default provider is never replaced (which would replace everything).
func (p *Provider) DiffConfig(_ context.Context, req plugin.DiffConfigRequest) (plugin.DiffConfigResponse, error) {
	olds, news := Plain(req.OldOutputs), Plain(req.NewInputs)
	var changed []resource.PropertyKey
	for k := range union(olds, news) {
		if !olds[k].DeepEquals(news[k]) {
			changed = append(changed, k)
		}
	}
	if len(changed) == 0 {
		return plugin.DiffResult{Changes: plugin.DiffNone}, nil
	}
	sort.Slice(changed, func(i, j int) bool { return changed[i] < changed[j] })
	return plugin.DiffResult{Changes: plugin.DiffSome, ChangedKeys: changed}, nil
}

func (p *Provider) Configure(ctx context.Context, req plugin.ConfigureRequest) (plugin.ConfigureResponse, error) {
	if p.OnConfigure != nil {
		if err := p.OnConfigure(ctx, Plain(req.Inputs)); err != nil {
			return plugin.ConfigureResponse{}, err
		}
	}
	p.mu.Lock()
	p.configured = true
	p.mu.Unlock()
	return plugin.ConfigureResponse{}, nil
}

func (p *Provider) typ(t tokens.Type) (*Type, error) {
	ty, ok := p.Types[string(t)]
	if !ok {
		// The real provider knows hundreds of types; this stand-in only those
		// the program declares. Fail loudly so a new type is noticed.
		return nil, fmt.Errorf("stand-in pulumi-resource-%s does not implement %s; add it to test/providers/%s", p.Name, t, p.Name)
	}
	return ty, nil
}

// defaultsKey lists the inputs the provider filled in, as the bridge does.
const defaultsKey = "__defaults"

func (p *Provider) Check(_ context.Context, req plugin.CheckRequest) (plugin.CheckResponse, error) {
	t, err := p.typ(req.Type)
	if err != nil {
		return plugin.CheckResponse{}, err
	}
	in := req.News.Copy()
	delete(in, defaultsKey)
	var filled []resource.PropertyValue
	for k, v := range t.Defaults {
		if _, ok := in[resource.PropertyKey(k)]; !ok {
			in[resource.PropertyKey(k)] = v
			filled = append(filled, resource.NewStringProperty(k))
		}
	}
	if t.AutoName != "" {
		key := resource.PropertyKey(t.AutoName)
		if _, ok := in[key]; !ok {
			// Keep the old autoname on updates; else <name>-<7 hex> from the
			// engine's seed, like the bridge's AutoName default.
			if old, ok := req.Olds[key]; ok && isDefault(req.Olds, t.AutoName) {
				in[key] = old
			} else {
				in[key] = resource.NewStringProperty(autoName(req.Name, req.RandomSeed, t.AutoNameMax))
			}
			filled = append(filled, resource.NewStringProperty(t.AutoName))
		}
	}
	sort.Slice(filled, func(i, j int) bool { return filled[i].StringValue() < filled[j].StringValue() })
	in[defaultsKey] = resource.NewArrayProperty(filled)

	var failures []plugin.CheckFailure
	for _, k := range t.Required {
		if v, ok := in[resource.PropertyKey(k)]; !ok || v.IsNull() {
			failures = append(failures, plugin.CheckFailure{Property: resource.PropertyKey(k),
				Reason: fmt.Sprintf("Missing required argument: the argument %q is required, but no definition was found.", k)})
		}
	}
	if t.Validate != nil && len(failures) == 0 {
		// Unknown values (a preview's outputs of other resources) are
		// present but pass: validators read them through Known.
		failures = append(failures, t.Validate(Plain(in))...)
	}
	return plugin.CheckResponse{Properties: in, Failures: failures}, nil
}

func isDefault(m Props, key string) bool {
	d, ok := m[defaultsKey]
	if !ok || !d.IsArray() {
		return false
	}
	for _, v := range d.ArrayValue() {
		if v.IsString() && v.StringValue() == key {
			return true
		}
	}
	return false
}

func autoName(name string, seed []byte, max int) string {
	h := sha256.Sum256(append([]byte(name), seed...))
	n := name + "-" + hex.EncodeToString(h[:])[:7]
	if max > 0 && len(n) > max {
		n = n[len(n)-max:]
	}
	return n
}

func union(a, b Props) map[resource.PropertyKey]bool {
	m := map[resource.PropertyKey]bool{}
	for k := range a {
		m[k] = true
	}
	for k := range b {
		m[k] = true
	}
	return m
}

// Diff compares the new inputs with the old state, per top-level input.
func (p *Provider) Diff(_ context.Context, req plugin.DiffRequest) (plugin.DiffResponse, error) {
	t, err := p.typ(req.Type)
	if err != nil {
		return plugin.DiffResult{}, err
	}
	ignored := map[string]bool{}
	for _, path := range req.IgnoreChanges {
		ignored[strings.SplitN(strings.SplitN(path, ".", 2)[0], "[", 2)[0]] = true
	}
	res := plugin.DiffResult{Changes: plugin.DiffNone, DetailedDiff: map[string]plugin.PropertyDiff{}}
	replace := false
	for _, k := range t.Inputs {
		key := resource.PropertyKey(k)
		if ignored[k] {
			continue
		}
		nv, inNew := req.NewInputs[key]
		ov, inOld := req.OldOutputs[key]
		if !inNew || nv.IsNull() {
			if slices.Contains(t.OptionalComputed, k) {
				continue // Optional+Computed: kept as the state has it
			}
			if _, hadInput := req.OldInputs[key]; !hadInput || !inOld || ov.IsNull() {
				continue
			}
		}
		if t.equal(k, ov, nv) {
			continue
		}
		kind := plugin.DiffUpdate
		switch {
		case !inOld || ov.IsNull():
			kind = plugin.DiffAdd
		case !inNew || nv.IsNull():
			kind = plugin.DiffDelete
		}
		if slices.Contains(t.ForceNew, k) {
			kind = kind.AsReplace()
			res.ReplaceKeys = append(res.ReplaceKeys, key)
			replace = true
		}
		res.ChangedKeys = append(res.ChangedKeys, key)
		res.DetailedDiff[k] = plugin.PropertyDiff{Kind: kind, InputDiff: true}
	}
	if len(res.ChangedKeys) > 0 {
		res.Changes = plugin.DiffSome
	}
	if replace && t.AutoName != "" {
		if v, ok := req.NewInputs[resource.PropertyKey(t.AutoName)]; ok && !v.IsNull() && !isDefault(req.NewInputs, t.AutoName) {
			// A fixed name cannot exist twice: delete the old one first.
			res.DeleteBeforeReplace = true
		}
	}
	return res, nil
}

func (t *Type) equal(k string, old, new resource.PropertyValue) bool {
	if new.ContainsUnknowns() {
		return false
	}
	o, n := plainValue(old), plainValue(new)
	if o.IsNull() && isEmpty(n) || n.IsNull() && isEmpty(o) {
		return true
	}
	if f, ok := t.Equivalent[k]; ok && !o.IsNull() && !n.IsNull() {
		return f(o, n)
	}
	if slices.Contains(t.Sets, k) && o.IsArray() && n.IsArray() {
		return sameSet(o.ArrayValue(), n.ArrayValue())
	}
	return o.DeepEquals(n)
}

// isEmpty: Terraform treats an empty list/map/string like an absent value.
func isEmpty(v resource.PropertyValue) bool {
	switch {
	case v.IsNull():
		return true
	case v.IsArray():
		return len(v.ArrayValue()) == 0
	case v.IsObject():
		return len(v.ObjectValue()) == 0
	case v.IsString():
		return v.StringValue() == ""
	}
	return false
}

func sameSet(a, b []resource.PropertyValue) bool {
	if len(a) != len(b) {
		return false
	}
	used := make([]bool, len(b))
outer:
	for _, x := range a {
		for j, y := range b {
			if !used[j] && x.DeepEquals(y) {
				used[j] = true
				continue outer
			}
		}
		return false
	}
	return true
}

// outputs assembles a resource's state: its inputs, overlaid by the live
// properties where they differ in meaning (an equivalent live value keeps
// the input's spelling, as the provider's StateFunc/PolicyToSet do), with
// secret inputs and Secret properties returned as secrets.
func (t *Type) outputs(in Props, live Props) Props {
	out := resource.PropertyMap{}
	for k, v := range in {
		if k == defaultsKey {
			continue
		}
		out[k] = v
	}
	for k, lv := range live {
		if iv, ok := out[k]; ok && !slices.Contains(t.LiveWins, string(k)) && t.equal(string(k), lv, iv) {
			continue
		}
		if iv, ok := out[k]; ok && iv.IsSecret() {
			lv = resource.MakeSecret(plainValue(lv))
		}
		out[k] = lv
	}
	for _, k := range t.Secret {
		if v, ok := out[resource.PropertyKey(k)]; ok && !v.IsSecret() && !v.IsNull() {
			out[resource.PropertyKey(k)] = resource.MakeSecret(v)
		}
	}
	return out
}

func (p *Provider) Create(ctx context.Context, req plugin.CreateRequest) (plugin.CreateResponse, error) {
	t, err := p.typ(req.Type)
	if err != nil {
		return plugin.CreateResponse{}, err
	}
	if req.Preview {
		out := t.outputs(req.Properties, nil)
		for _, k := range t.Computed {
			if _, ok := out[resource.PropertyKey(k)]; !ok {
				out[resource.PropertyKey(k)] = resource.MakeComputed(resource.NewStringProperty(""))
			}
		}
		for k, fields := range t.NestedComputed {
			key := resource.PropertyKey(k)
			obj := resource.PropertyMap{}
			if v, ok := out[key]; ok && v.IsObject() {
				obj = v.ObjectValue().Copy()
			}
			for _, f := range fields {
				obj[resource.PropertyKey(f)] = resource.MakeComputed(resource.NewStringProperty(""))
			}
			out[key] = resource.NewObjectProperty(obj)
		}
		return plugin.CreateResponse{Properties: out}, nil
	}
	id, live, err := t.Create(ctx, Plain(req.Properties))
	if err != nil {
		return plugin.CreateResponse{}, fmt.Errorf("creating %s (%s): %w", req.Type, req.Name, err)
	}
	return plugin.CreateResponse{ID: resource.ID(id), Properties: t.outputs(req.Properties, live)}, nil
}

func (p *Provider) Read(ctx context.Context, req plugin.ReadRequest) (plugin.ReadResponse, error) {
	t, err := p.typ(req.Type)
	if err != nil {
		return plugin.ReadResponse{}, err
	}
	state := req.State
	if state == nil {
		state = req.Inputs // import: only the inputs are known
	}
	live, err := t.Read(ctx, string(req.ID), Plain(state))
	if err != nil {
		return plugin.ReadResponse{}, fmt.Errorf("reading %s (%s): %w", req.Type, req.ID, err)
	}
	if live == nil {
		return plugin.ReadResponse{}, nil // gone: the engine drops it
	}
	base := state
	if base == nil {
		base = resource.PropertyMap{}
	}
	out := t.outputs(base, live)
	// The new inputs are the old input keys with the live values; an import
	// (no inputs, no state) gets every input the live resource has, as the
	// bridge's Read returns them.
	ins := resource.PropertyMap{}
	if len(req.Inputs) == 0 && len(req.State) == 0 {
		for _, k := range t.Inputs {
			if v, ok := out[resource.PropertyKey(k)]; ok {
				ins[resource.PropertyKey(k)] = v
			}
		}
	}
	for k, v := range req.Inputs {
		if k == defaultsKey {
			ins[k] = v
			continue
		}
		if ov, ok := out[k]; ok {
			ins[k] = ov
		} else {
			ins[k] = v
		}
	}
	return plugin.ReadResponse{ReadResult: plugin.ReadResult{ID: req.ID, Inputs: ins, Outputs: out}}, nil
}

func (p *Provider) Update(ctx context.Context, req plugin.UpdateRequest) (plugin.UpdateResponse, error) {
	t, err := p.typ(req.Type)
	if err != nil {
		return plugin.UpdateResponse{}, err
	}
	d, err := p.Diff(ctx, plugin.DiffRequest{Type: req.Type, OldInputs: req.OldInputs, OldOutputs: req.OldOutputs,
		NewInputs: req.NewInputs, IgnoreChanges: req.IgnoreChanges})
	if err != nil {
		return plugin.UpdateResponse{}, err
	}
	var changed []string
	for _, k := range d.ChangedKeys {
		changed = append(changed, string(k))
	}
	base := req.OldOutputs.Copy()
	for k, v := range req.NewInputs {
		base[k] = v
	}
	if req.Preview {
		return plugin.UpdateResponse{Properties: t.outputs(base, nil)}, nil
	}
	live, err := t.Update(ctx, string(req.ID), Plain(req.OldOutputs), Plain(req.NewInputs), changed)
	if err != nil {
		return plugin.UpdateResponse{}, fmt.Errorf("updating %s (%s): %w", req.Type, req.ID, err)
	}
	return plugin.UpdateResponse{Properties: t.outputs(base, live)}, nil
}

func (p *Provider) Delete(ctx context.Context, req plugin.DeleteRequest) (plugin.DeleteResponse, error) {
	t, err := p.typ(req.Type)
	if err != nil {
		return plugin.DeleteResponse{}, err
	}
	if err := t.Delete(ctx, string(req.ID), Plain(req.Outputs)); err != nil {
		return plugin.DeleteResponse{}, fmt.Errorf("deleting %s (%s): %w", req.Type, req.ID, err)
	}
	return plugin.DeleteResponse{}, nil
}

func (p *Provider) Invoke(ctx context.Context, req plugin.InvokeRequest) (plugin.InvokeResponse, error) {
	f, ok := p.Invokes[string(req.Tok)]
	if !ok {
		return plugin.InvokeResponse{}, fmt.Errorf("stand-in pulumi-resource-%s does not implement the function %s; add it to test/providers/%s", p.Name, req.Tok, p.Name)
	}
	out, err := f(ctx, Plain(req.Args))
	if err != nil {
		return plugin.InvokeResponse{}, err
	}
	return plugin.InvokeResponse{Properties: out}, nil
}

// GetMapping answers "no mapping" (used only by converters).
func (p *Provider) GetMapping(context.Context, plugin.GetMappingRequest) (plugin.GetMappingResponse, error) {
	return plugin.GetMappingResponse{}, nil
}

func (p *Provider) GetMappings(context.Context, plugin.GetMappingsRequest) (plugin.GetMappingsResponse, error) {
	return plugin.GetMappingsResponse{}, nil
}

// Plain strips secret wrappers (the operations work on plain values).
func Plain(m Props) Props {
	out := resource.PropertyMap{}
	for k, v := range m {
		out[k] = plainValue(v)
	}
	return out
}

func plainValue(v resource.PropertyValue) resource.PropertyValue {
	switch {
	case v.IsSecret():
		return plainValue(v.SecretValue().Element)
	case v.IsOutput():
		o := v.OutputValue()
		if !o.Known {
			return resource.MakeComputed(resource.NewStringProperty(""))
		}
		return plainValue(o.Element)
	case v.IsArray():
		var a []resource.PropertyValue
		for _, e := range v.ArrayValue() {
			a = append(a, plainValue(e))
		}
		return resource.NewArrayProperty(a)
	case v.IsObject():
		return resource.NewObjectProperty(Plain(v.ObjectValue()))
	}
	return v
}
