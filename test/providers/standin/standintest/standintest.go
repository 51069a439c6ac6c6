// Package standintest drives a stand-in provider through the calls the engine
// makes, for the stand-ins' own tests.
package standintest

import (
	"context"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"

	"github.com/agentkeys/agentkeys-infra/test/providers/standin"
)

// Props is a property map.
type Props = standin.Props

// Harness is a provider under test.
type Harness struct {
	T *testing.T
	P plugin.Provider
}

// Res is one resource as the engine tracks it.
type Res struct {
	Token, Name string
	ID          string
	Inputs      Props // checked inputs
	Outputs     Props
}

func (h Harness) urn(token, name string) resource.URN {
	return resource.NewURN("test", "standin", "", tokens.Type(token), name)
}

// Check runs Check and returns the checked inputs and failures.
func (h Harness) Check(token, name string, olds, news Props) (Props, []plugin.CheckFailure) {
	h.T.Helper()
	r, err := h.P.Check(context.Background(), plugin.CheckRequest{URN: h.urn(token, name), Name: name, Type: tokens.Type(token),
		Olds: olds, News: news, RandomSeed: []byte(name)})
	if err != nil {
		h.T.Fatalf("Check %s %s: %v", token, name, err)
	}
	return r.Properties, r.Failures
}

// MustCheck is Check that fails the test on a check failure.
func (h Harness) MustCheck(token, name string, olds, news Props) Props {
	h.T.Helper()
	in, f := h.Check(token, name, olds, news)
	if len(f) > 0 {
		h.T.Fatalf("Check %s %s: unexpected failures %v", token, name, f)
	}
	return in
}

// Preview runs a preview Create.
func (h Harness) Preview(token, name string, news Props) Props {
	h.T.Helper()
	in := h.MustCheck(token, name, nil, news)
	r, err := h.P.Create(context.Background(), plugin.CreateRequest{URN: h.urn(token, name), Name: name, Type: tokens.Type(token), Properties: in, Preview: true})
	if err != nil {
		h.T.Fatalf("preview Create %s: %v", token, err)
	}
	return r.Properties
}

// Create checks and creates; it fails the test on any error.
func (h Harness) Create(token, name string, news Props) *Res {
	h.T.Helper()
	r, err := h.TryCreate(token, name, news)
	if err != nil {
		h.T.Fatalf("Create %s %s: %v", token, name, err)
	}
	return r
}

// TryCreate checks and creates, returning the provider's error.
func (h Harness) TryCreate(token, name string, news Props) (*Res, error) {
	h.T.Helper()
	in := h.MustCheck(token, name, nil, news)
	r, err := h.P.Create(context.Background(), plugin.CreateRequest{URN: h.urn(token, name), Name: name, Type: tokens.Type(token), Properties: in})
	if err != nil {
		return nil, err
	}
	if r.ID == "" {
		h.T.Fatalf("Create %s %s returned no ID", token, name)
	}
	return &Res{Token: token, Name: name, ID: string(r.ID), Inputs: in, Outputs: r.Properties}, nil
}

// Diff checks news against r and diffs them.
func (h Harness) Diff(r *Res, news Props, ignore ...string) (Props, plugin.DiffResult) {
	h.T.Helper()
	in := h.MustCheck(r.Token, r.Name, r.Inputs, news)
	d, err := h.P.Diff(context.Background(), plugin.DiffRequest{URN: h.urn(r.Token, r.Name), Name: r.Name, Type: tokens.Type(r.Token),
		ID: resource.ID(r.ID), OldInputs: r.Inputs, OldOutputs: r.Outputs, NewInputs: in, IgnoreChanges: ignore})
	if err != nil {
		h.T.Fatalf("Diff %s: %v", r.Token, err)
	}
	return in, d
}

// NoDiff asserts that the same inputs diff as no change (no perpetual diff).
func (h Harness) NoDiff(r *Res, news Props) {
	h.T.Helper()
	if _, d := h.Diff(r, news); d.Changes != plugin.DiffNone {
		h.T.Fatalf("%s %s: the same inputs diff as %v (changed %v, replace %v)", r.Token, r.Name, d.Changes, d.ChangedKeys, d.ReplaceKeys)
	}
}

// Update diffs and updates r to news in place (the diff must not replace).
func (h Harness) Update(r *Res, news Props) {
	h.T.Helper()
	in, d := h.Diff(r, news)
	if d.Changes != plugin.DiffSome || len(d.ReplaceKeys) > 0 {
		h.T.Fatalf("%s %s: expected an in-place update, got %v replace %v", r.Token, r.Name, d.Changes, d.ReplaceKeys)
	}
	u, err := h.P.Update(context.Background(), plugin.UpdateRequest{URN: h.urn(r.Token, r.Name), Name: r.Name, Type: tokens.Type(r.Token),
		ID: resource.ID(r.ID), OldInputs: r.Inputs, OldOutputs: r.Outputs, NewInputs: in})
	if err != nil {
		h.T.Fatalf("Update %s %s: %v", r.Token, r.Name, err)
	}
	r.Inputs, r.Outputs = in, u.Properties
}

// Read refreshes r; it returns false when the resource is gone.
func (h Harness) Read(r *Res) bool {
	h.T.Helper()
	out, err := h.P.Read(context.Background(), plugin.ReadRequest{URN: h.urn(r.Token, r.Name), Name: r.Name, Type: tokens.Type(r.Token),
		ID: resource.ID(r.ID), Inputs: r.Inputs, State: r.Outputs})
	if err != nil {
		h.T.Fatalf("Read %s %s: %v", r.Token, r.Name, err)
	}
	if out.Outputs == nil {
		return false
	}
	r.Inputs, r.Outputs = out.Inputs, out.Outputs
	return true
}

// Delete deletes r and checks that a Read then finds nothing.
func (h Harness) Delete(r *Res) {
	h.T.Helper()
	if _, err := h.P.Delete(context.Background(), plugin.DeleteRequest{URN: h.urn(r.Token, r.Name), Name: r.Name, Type: tokens.Type(r.Token),
		ID: resource.ID(r.ID), Inputs: r.Inputs, Outputs: r.Outputs}); err != nil {
		h.T.Fatalf("Delete %s %s: %v", r.Token, r.Name, err)
	}
	if h.Read(r) {
		h.T.Fatalf("%s %s: still readable after Delete", r.Token, r.Name)
	}
}

// Invoke calls a function.
func (h Harness) Invoke(tok string, args Props) (Props, error) {
	h.T.Helper()
	r, err := h.P.Invoke(context.Background(), plugin.InvokeRequest{Tok: tokens.ModuleMember(tok), Args: args})
	return r.Properties, err
}
