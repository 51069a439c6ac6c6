package plan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

// Printable turns a property map into plain JSON values, with secrets and
// unknowns replaced by markers so that nothing secret can be printed.
func Printable(m resource.PropertyMap) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		if strings.HasPrefix(string(k), "__") {
			continue
		}
		out[string(k)] = printable(v)
	}
	return out
}

func printable(v resource.PropertyValue) any {
	switch {
	case v.IsSecret():
		return Secret
	case v.IsComputed(), v.IsOutput() && !v.OutputValue().Known:
		return Unknown
	case v.IsOutput():
		if v.OutputValue().Secret {
			return Secret
		}
		return printable(v.OutputValue().Element)
	case v.IsNull():
		return nil
	case v.IsBool():
		return v.BoolValue()
	case v.IsNumber():
		return v.NumberValue()
	case v.IsString():
		return v.StringValue()
	case v.IsArray():
		arr := []any{}
		for _, e := range v.ArrayValue() {
			arr = append(arr, printable(e))
		}
		return arr
	case v.IsObject():
		return Printable(v.ObjectValue())
	case v.IsAsset():
		a := v.AssetValue()
		if a.Path != "" {
			return map[string]any{"asset": a.Path, "hash": a.Hash}
		}
		return map[string]any{"asset": "(text)", "hash": a.Hash}
	case v.IsArchive():
		return map[string]any{"archive": v.ArchiveValue().Hash}
	case v.IsResourceReference():
		return v.ResourceReferenceValue().URN
	}
	return fmt.Sprint(v)
}

// ByURN indexes the plan's resources.
func (p *Plan) ByURN() map[string]*Resource {
	m := map[string]*Resource{}
	for _, r := range p.Resources {
		m[r.URN] = r
	}
	return m
}

// Find returns the resources of a type whose logical name has the given suffix.
func (p *Plan) Find(typ, name string) []*Resource {
	var out []*Resource
	for _, r := range p.Resources {
		if r.Type == typ && (name == "" || strings.HasSuffix(r.Name, name)) {
			out = append(out, r)
		}
	}
	return out
}

// Raw is the resource's inputs with secret and unknown markers intact.
func (r *Resource) Raw() resource.PropertyMap { return r.raw }

// physicalKeys are the input keys that carry a resource's physical name.
var physicalKeys = []string{"bucket", "name", "ruleSetName", "emailIdentity", "url", "role", "instanceProfile"}

// PhysicalName is the cloud-side name a resource declares, or "".
func (r *Resource) PhysicalName() string {
	if r.Type == "aws:ec2/eip:Eip" {
		if tags, ok := r.Inputs["tags"].(map[string]any); ok {
			if n, ok := tags["Name"].(string); ok {
				return n
			}
		}
	}
	if r.Type == "aws:ec2/tag:Tag" {
		if k, _ := r.Inputs["key"].(string); k == "Name" {
			v, _ := r.Inputs["value"].(string)
			return v
		}
		return ""
	}
	if !r.Custom {
		return ""
	}
	for _, k := range physicalKeys {
		if s, ok := r.Inputs[k].(string); ok && s != "" {
			return s
		}
	}
	return ""
}

// JSON writes the plan shaped like `pulumi preview --json`.
func (p *Plan) JSON(w io.Writer) error {
	type state struct {
		Type         string         `json:"type"`
		URN          string         `json:"urn"`
		Custom       bool           `json:"custom"`
		Parent       string         `json:"parent,omitempty"`
		Dependencies []string       `json:"dependencies"`
		Protect      bool           `json:"protect"`
		RetainOnDel  bool           `json:"retainOnDelete,omitempty"`
		DeletedWith  string         `json:"deletedWith,omitempty"`
		ImportID     string         `json:"importId,omitempty"`
		Inputs       map[string]any `json:"inputs"`
	}
	type step struct {
		Op       string `json:"op"`
		URN      string `json:"urn"`
		NewState state  `json:"newState"`
	}
	type diag struct {
		Severity string `json:"severity"`
		Message  string `json:"message"`
	}
	doc := struct {
		Steps       []step         `json:"steps"`
		Outputs     map[string]any `json:"outputs"`
		Diagnostics []diag         `json:"diagnostics,omitempty"`
	}{Steps: []step{}, Outputs: map[string]any{}}
	for _, n := range p.Notes {
		doc.Diagnostics = append(doc.Diagnostics, diag{Severity: "info", Message: n})
	}
	for _, r := range p.Resources {
		op := "create"
		switch {
		case p.View == ViewConverged:
			op = "same"
		case r.ImportID != "":
			op = "import"
		}
		doc.Steps = append(doc.Steps, step{Op: op, URN: r.URN, NewState: state{
			Type: r.Type, URN: r.URN, Custom: r.Custom, Parent: r.Parent, Dependencies: r.Dependencies,
			Protect: r.Protect, RetainOnDel: r.RetainOnDel, DeletedWith: r.DeletedWith, ImportID: r.ImportID, Inputs: r.Inputs,
		}})
	}
	for k, o := range p.Outputs {
		doc.Outputs[k] = outputValue(o)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

func outputValue(o Output) any {
	switch {
	case o.Secret:
		return Secret
	case !o.Known:
		return Unknown
	}
	return scrub(o.Value)
}

// scrub turns awaited output values (which may hold nested outputs) into JSON values.
func scrub(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

// Text writes the plan grouped by component: per resource its type, logical
// name and physical name, then the stack outputs.
func (p *Plan) Text(w io.Writer) {
	children := map[string][]*Resource{}
	byURN := p.ByURN()
	var roots []*Resource
	for _, r := range p.Resources {
		if _, ok := byURN[r.Parent]; ok {
			children[r.Parent] = append(children[r.Parent], r)
		} else {
			roots = append(roots, r)
		}
	}
	if p.View == ViewConverged {
		fmt.Fprintf(w, "Stack %s (converged): %d resources\n", p.Stack, len(p.Resources))
	} else {
		fmt.Fprintf(w, "Stack %s: %d resources\n", p.Stack, len(p.Resources))
	}
	for _, n := range p.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	var walk func(r *Resource, depth int)
	walk = func(r *Resource, depth int) {
		indent := strings.Repeat("  ", depth)
		op := "+"
		switch {
		case p.View == ViewConverged:
			op = "="
		case r.ImportID != "":
			op = "= import " + r.ImportID
		}
		phys := r.PhysicalName()
		if phys == "" {
			phys = "-"
		}
		flags := ""
		if r.Protect {
			flags = "  [protected]"
		}
		if !r.Custom {
			fmt.Fprintf(w, "%s%s %s %s%s\n", indent, op, r.Type, r.Name, flags)
		} else {
			fmt.Fprintf(w, "%s%s %-48s %-40s %s%s\n", indent, op, r.Type, r.Name, phys, flags)
		}
		if p.View == ViewConverged {
			printPolicies(w, r, indent+"    ")
		}
		for _, c := range children[r.URN] {
			walk(c, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 1)
	}
	keys := make([]string, 0, len(p.Outputs))
	for k := range p.Outputs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintln(w, "Outputs:")
	for _, k := range keys {
		b, _ := json.Marshal(outputValue(p.Outputs[k]))
		fmt.Fprintf(w, "  %-22s %s\n", k, b)
	}
}

// policyInputs are the inputs that hold an IAM or bucket policy document.
var policyInputs = []string{"assumeRolePolicy", "policy"}

// printPolicies writes r's policy documents, indented, so a reviewer reads
// each one in full.
func printPolicies(w io.Writer, r *Resource, indent string) {
	for _, k := range policyInputs {
		doc, ok := r.Inputs[k].(string)
		if !ok || !strings.HasPrefix(strings.TrimSpace(doc), "{") {
			continue
		}
		// Indent keeps the document's own key order.
		var b bytes.Buffer
		if err := json.Indent(&b, []byte(doc), indent+"  ", "  "); err != nil {
			fmt.Fprintf(w, "%s%s: %s\n", indent, k, doc)
			continue
		}
		fmt.Fprintf(w, "%s%s:\n%s  %s\n", indent, k, indent, b.String())
	}
}
