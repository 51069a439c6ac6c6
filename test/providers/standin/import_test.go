package standin_test

import (
	"context"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"

	"github.com/agentkeys/agentkeys-infra/test/providers/standin"
)

// An import reads the live resource with no inputs and no state: the inputs
// it returns are every input the live resource has (as pulumi-aws's bridge
// does), so `import` plus ignoreChanges keeps the live values.
func TestImportReadReturnsTheLiveInputs(t *testing.T) {
	store := map[string]standin.Props{"a": standin.M(map[string]any{"name": "a", "size": 7, "zone": "z9", "arn": "arn:a"})}
	p := standin.New("test", "1.0.0", []*standin.Type{thing(store)}, nil)
	r, err := p.Read(context.Background(), plugin.ReadRequest{URN: "urn:pulumi:s::p::test:index/thing:Thing::a", Type: "test:index/thing:Thing", ID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Inputs == nil || r.Inputs["name"].StringValue() != "a" || r.Inputs["size"].NumberValue() != 7 || r.Inputs["zone"].StringValue() != "z9" {
		t.Fatalf("import inputs %v", r.Inputs)
	}
	if _, ok := r.Inputs["arn"]; ok {
		t.Errorf("an output-only property came back as an input: %v", r.Inputs)
	}
}
