package standin_test

import (
	"context"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"

	"github.com/agentkeys/agentkeys-infra/test/providers/standin"
	"github.com/agentkeys/agentkeys-infra/test/providers/standin/standintest"
)

// thing is an in-memory type exercising the frame's bridge semantics.
func thing(store map[string]standin.Props) *standin.Type {
	return &standin.Type{
		Token:            "test:index/thing:Thing",
		Inputs:           []string{"name", "size", "tags", "zone", "members"},
		ForceNew:         []string{"name", "zone"},
		OptionalComputed: []string{"zone"},
		Sets:             []string{"members"},
		Defaults:         map[string]resource.PropertyValue{"size": resource.NewNumberProperty(1)},
		AutoName:         "name", AutoNameMax: 20,
		Computed: []string{"arn", "secretToken"},
		Secret:   []string{"secretToken"},
		Create: func(_ context.Context, in standin.Props) (string, standin.Props, error) {
			id := standin.Str(in, "name")
			live := standin.M(map[string]any{"arn": "arn:" + id, "zone": "z1", "secretToken": "s3cr3t"})
			store[id] = live
			return id, live, nil
		},
		Read: func(_ context.Context, id string, _ standin.Props) (standin.Props, error) { return store[id], nil },
		Update: func(_ context.Context, id string, _, _ standin.Props, _ []string) (standin.Props, error) {
			return store[id], nil
		},
		Delete: func(_ context.Context, id string, _ standin.Props) error { delete(store, id); return nil },
	}
}

func TestBridgeSemantics(t *testing.T) {
	store := map[string]standin.Props{}
	p := standin.New("test", "1.0.0", []*standin.Type{thing(store)}, nil)
	h := standintest.Harness{T: t, P: p}
	const tok = "test:index/thing:Thing"
	m := standin.M

	prev := h.Preview(tok, "a", m(map[string]any{"name": "a"}))
	if !prev["arn"].IsComputed() || prev["size"].NumberValue() != 1 {
		t.Fatalf("preview: arn %v size %v", prev["arn"], prev["size"])
	}
	r := h.Create(tok, "a", m(map[string]any{"name": "a", "members": []string{"x", "y"}}))
	if v := r.Outputs["secretToken"]; !v.IsSecret() {
		t.Fatalf("a Secret output is not secret: %v", v)
	}
	// Same meaning: a set in another order, an Optional+Computed left out.
	h.NoDiff(r, m(map[string]any{"name": "a", "members": []string{"y", "x"}}))
	if _, d := h.Diff(r, m(map[string]any{"name": "a", "members": []string{"y"}})); d.Changes != plugin.DiffSome || len(d.ReplaceKeys) > 0 {
		t.Fatalf("a member less: %v %v", d.Changes, d.ReplaceKeys)
	}
	// An explicit name that changes replaces delete-before-create.
	_, d := h.Diff(r, m(map[string]any{"name": "b", "members": []string{"x", "y"}}))
	if len(d.ReplaceKeys) != 1 || !d.DeleteBeforeReplace {
		t.Fatalf("name change: replace %v dbr %v", d.ReplaceKeys, d.DeleteBeforeReplace)
	}
	// An unknown value in a ForceNew input is a replace.
	_, d = h.Diff(r, standin.Props{"name": resource.MakeComputed(resource.NewStringProperty("")), "members": r.Inputs["members"]})
	if len(d.ReplaceKeys) != 1 {
		t.Fatalf("unknown name: %v", d.ReplaceKeys)
	}
	// ignoreChanges hides a property.
	if _, d := h.Diff(r, m(map[string]any{"name": "a", "members": []string{"x", "y"}, "size": 5}), "size"); d.Changes != plugin.DiffNone {
		t.Fatalf("ignored size: %v", d.ChangedKeys)
	}
	// Autonamed: the same name on the next check; a replace creates first.
	auto := h.Create(tok, "auto", m(map[string]any{}))
	if n := auto.Inputs["name"].StringValue(); len(n) != len("auto-")+7 {
		t.Fatalf("autoname %q", n)
	}
	in, d := h.Diff(auto, m(map[string]any{"zone": "z2"}))
	if in["name"].StringValue() != auto.Inputs["name"].StringValue() || len(d.ReplaceKeys) != 1 || d.DeleteBeforeReplace {
		t.Fatalf("autonamed replace: name %v replace %v dbr %v", in["name"], d.ReplaceKeys, d.DeleteBeforeReplace)
	}
	// A secret input stays secret in the outputs.
	s := h.Create(tok, "s", standin.Props{"name": resource.MakeSecret(resource.NewStringProperty("s"))})
	if !s.Outputs["name"].IsSecret() {
		t.Fatal("a secret input lost its secretness")
	}
	// A resource deleted behind the provider's back reads as gone.
	delete(store, "a")
	if h.Read(r) {
		t.Fatal("a missing resource still reads")
	}
}
