package components

import (
	"encoding/json"
	"testing"

	"github.com/agentkeys/agentkeys-infra/components/componenttest"
	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/internals"
	"github.com/stretchr/testify/require"
)

// kinds are the stack kinds every component is tested under.
var kinds = []string{"prod", "test", "test-2", "base"}

const (
	testZone   = "example.org"
	testZoneID = "Z0PARENT"
	testInst   = "i-0abc123"
)

func namesFor(t *testing.T, stack string) naming.Names {
	t.Helper()
	s, err := naming.ParseStack(stack)
	require.NoError(t, err)
	return naming.Derive(s, naming.Fork{AccountID: componenttest.MockAccount, Zone: testZone, ParentZoneID: testZoneID, Region: "us-east-1"})
}

func newRec(stack string) *componenttest.Recorder { return componenttest.New("agentkeys", stack) }

// await resolves an output inside a mock program.
func await(t *testing.T, ctx *pulumi.Context, o pulumi.Output) internals.UnsafeAwaitOutputResult {
	t.Helper()
	r, err := internals.UnsafeAwaitOutput(ctx.Context(), o)
	require.NoError(t, err)
	return r
}

// mustFind returns the registration of typ/name or fails with the plan.
func mustFind(t *testing.T, rec *componenttest.Recorder, typ, name string) componenttest.Resource {
	t.Helper()
	r, ok := rec.Find(typ, name)
	require.Truef(t, ok, "no %s %q in:\n%s", typ, name, rec.Summary())
	return r
}

// assertParented checks that every resource is parented to a component of
// type componentType and that each component registered its outputs.
func assertParented(t *testing.T, rec *componenttest.Recorder, componentType string, components int) {
	t.Helper()
	comps := rec.ByType(componentType)
	require.Len(t, comps, components)
	urns := map[string]bool{}
	for _, c := range comps {
		urns[c.URN] = true
	}
	for _, r := range rec.Resources() {
		if r.Type == componentType {
			continue
		}
		require.Truef(t, urns[r.Parent], "%s %s has parent %q, want a %s", r.Type, r.Name, r.Parent, componentType)
	}
	// +1: the root stack registers its outputs too.
	require.Equal(t, components+1, rec.OutputsRegistered(), "every component must call RegisterResourceOutputs")
}

// policyOf decodes a JSON policy input for statement-level assertions.
func policyOf(t *testing.T, r componenttest.Resource, key string) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoErrorf(t, json.Unmarshal([]byte(r.Str(key)), &m), "%s %s: %s", r.Type, r.Name, key)
	return m
}

func strs(v resource.PropertyValue) []string {
	var out []string
	for _, e := range componenttest.Unwrap(v).ArrayValue() {
		out = append(out, e.StringValue())
	}
	return out
}

func fmtKind(stack string, federated bool) string {
	if federated {
		return stack + "/federated"
	}
	return stack + "/static"
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
