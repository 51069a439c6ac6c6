package standin

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
)

// Str is m[k] as a string ("" when absent or not a string).
func Str(m Props, k string) string {
	if v, ok := m[resource.PropertyKey(k)]; ok && v.IsString() {
		return v.StringValue()
	}
	return ""
}

// Has reports whether m[k] is set and not null.
func Has(m Props, k string) bool {
	v, ok := m[resource.PropertyKey(k)]
	return ok && !v.IsNull()
}

// Bool is m[k] as a bool (false when absent).
func Bool(m Props, k string) bool {
	if v, ok := m[resource.PropertyKey(k)]; ok && v.IsBool() {
		return v.BoolValue()
	}
	return false
}

// Int is m[k] as an int (0 when absent).
func Int(m Props, k string) int {
	if v, ok := m[resource.PropertyKey(k)]; ok && v.IsNumber() {
		return int(v.NumberValue())
	}
	return 0
}

// Strs is m[k] as a list of strings.
func Strs(m Props, k string) []string {
	v, ok := m[resource.PropertyKey(k)]
	if !ok || !v.IsArray() {
		return nil
	}
	var out []string
	for _, e := range v.ArrayValue() {
		if e.IsString() {
			out = append(out, e.StringValue())
		}
	}
	return out
}

// StrMap is m[k] as a map of strings.
func StrMap(m Props, k string) map[string]string {
	v, ok := m[resource.PropertyKey(k)]
	if !ok || !v.IsObject() {
		return nil
	}
	out := map[string]string{}
	for kk, e := range v.ObjectValue() {
		if e.IsString() {
			out[string(kk)] = e.StringValue()
		}
	}
	return out
}

// Obj is m[k] as an object (nil when absent).
func Obj(m Props, k string) Props {
	if v, ok := m[resource.PropertyKey(k)]; ok && v.IsObject() {
		return v.ObjectValue()
	}
	return nil
}

// Objs is m[k] as a list of objects.
func Objs(m Props, k string) []Props {
	v, ok := m[resource.PropertyKey(k)]
	if !ok || !v.IsArray() {
		return nil
	}
	var out []Props
	for _, e := range v.ArrayValue() {
		if e.IsObject() {
			out = append(out, e.ObjectValue())
		}
	}
	return out
}

// M builds a property map from plain Go values (nil values are skipped).
func M(kv map[string]any) Props {
	out := resource.PropertyMap{}
	for k, v := range kv {
		if v == nil || reflect.ValueOf(v).Kind() == reflect.Pointer && reflect.ValueOf(v).IsNil() {
			continue
		}
		out[resource.PropertyKey(k)] = V(v)
	}
	return out
}

// V converts a plain Go value to a property value.
func V(v any) resource.PropertyValue {
	switch x := v.(type) {
	case resource.PropertyValue:
		return x
	case Props:
		return resource.NewObjectProperty(x)
	case []string:
		a := make([]resource.PropertyValue, 0, len(x))
		for _, s := range x {
			a = append(a, resource.NewStringProperty(s))
		}
		return resource.NewArrayProperty(a)
	case []Props:
		a := make([]resource.PropertyValue, 0, len(x))
		for _, o := range x {
			a = append(a, resource.NewObjectProperty(o))
		}
		return resource.NewArrayProperty(a)
	case map[string]string:
		o := resource.PropertyMap{}
		for k, s := range x {
			o[resource.PropertyKey(k)] = resource.NewStringProperty(s)
		}
		return resource.NewObjectProperty(o)
	case int:
		return resource.NewNumberProperty(float64(x))
	case int32:
		return resource.NewNumberProperty(float64(x))
	case int64:
		return resource.NewNumberProperty(float64(x))
	case *int32:
		return resource.NewNumberProperty(float64(*x))
	case *string:
		return resource.NewStringProperty(*x)
	case *bool:
		return resource.NewBoolProperty(*x)
	}
	return resource.NewPropertyValue(v)
}

// Fail is one check failure.
func Fail(prop, format string, args ...any) plugin.CheckFailure {
	return plugin.CheckFailure{Property: resource.PropertyKey(prop), Reason: fmt.Sprintf(format, args...)}
}

// JSONEquivalent compares two JSON documents by meaning (key order and
// spacing ignored; lists keep their order).
func JSONEquivalent(a, b resource.PropertyValue) bool {
	if !a.IsString() || !b.IsString() {
		return a.DeepEquals(b)
	}
	var x, y any
	if json.Unmarshal([]byte(a.StringValue()), &x) != nil || json.Unmarshal([]byte(b.StringValue()), &y) != nil {
		return a.StringValue() == b.StringValue()
	}
	return reflect.DeepEqual(x, y)
}

// PolicyEquivalent compares IAM policy documents the way the AWS provider's
// SuppressEquivalentPolicyDiffs does (hashicorp/awspolicyequivalence): a
// single string equals a one-element list, statement and principal lists
// compare as sets, Version and Sid spelling are kept.
func PolicyEquivalent(a, b resource.PropertyValue) bool {
	if !a.IsString() || !b.IsString() {
		return a.DeepEquals(b)
	}
	var x, y any
	if json.Unmarshal([]byte(a.StringValue()), &x) != nil || json.Unmarshal([]byte(b.StringValue()), &y) != nil {
		return a.StringValue() == b.StringValue()
	}
	return reflect.DeepEqual(canonPolicy(x), canonPolicy(y))
}

// canonPolicy turns every bare string into a one-element list and sorts
// every list by its JSON encoding.
func canonPolicy(v any) any { return canon(v, false) }

func canon(v any, inList bool) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if k == "Version" || k == "Id" || k == "Sid" || k == "Effect" {
				out[k] = e
				continue
			}
			if st, ok := e.(map[string]any); ok && k == "Statement" {
				e = []any{st} // one statement object = a list of one
			}
			out[k] = canon(e, false)
		}
		return out
	case []any:
		var items []any
		for _, e := range x {
			items = append(items, canon(e, true))
		}
		sort.Slice(items, func(i, j int) bool {
			bi, _ := json.Marshal(items[i])
			bj, _ := json.Marshal(items[j])
			return string(bi) < string(bj)
		})
		return items
	case string:
		if inList {
			return x
		}
		return []any{x}
	}
	return v
}
