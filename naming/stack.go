// Package naming derives every identifier of one AgentKeys stack from the
// stack name and the five fork keys. It has no Pulumi imports so that the
// program, the host agent and the operator tools share one source of truth.
package naming

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Kind is the posture of a stack.
type Kind string

const (
	// KindProd is a production-posture stack: prod (Heima) or a chain stack such as base.
	KindProd Kind = "prod"
	// KindTest is a test-fleet slot: test (slot 1) or test-N.
	KindTest Kind = "test"
)

// Chains maps a chain stack name to its chain. prod runs heima; adding a chain
// stack is one entry here.
var Chains = map[string]string{"base": "base"}

// DefaultChain is the chain of prod and of every test slot.
const DefaultChain = "heima"

// Stack is the identity a stack name decides: kind, slot, chain and suffix.
type Stack struct {
	Name   string
	Kind   Kind
	Slot   int    // 1.. for test stacks, 0 otherwise
	Chain  string // heima, base, ...
	Suffix string // "", "-test", "-test-N", "-base"
}

// ProdPosture reports whether the stack holds production data (prod or a chain stack).
func (s Stack) ProdPosture() bool { return s.Kind == KindProd }

// ParseStack maps a stack name to its identity. Only prod, base (and the other
// entries of Chains), test and test-N with N >= 2 are valid.
func ParseStack(name string) (Stack, error) {
	switch {
	case name == "prod":
		return Stack{Name: name, Kind: KindProd, Chain: DefaultChain}, nil
	case name == "test":
		return Stack{Name: name, Kind: KindTest, Slot: 1, Chain: DefaultChain, Suffix: "-test"}, nil
	case strings.HasPrefix(name, "test-"):
		n := strings.TrimPrefix(name, "test-")
		slot, err := strconv.Atoi(n)
		if err != nil || n != strconv.Itoa(slot) {
			return Stack{}, fmt.Errorf("stack %q: slot %q is not a number; name test slots test-2, test-3, ... (slot 1 is the stack named \"test\")", name, n)
		}
		if slot < 2 {
			return Stack{}, fmt.Errorf("stack %q: slot must be >= 2; slot 1 is the grandfathered stack named \"test\", use test-2 or higher for new slots", name)
		}
		return Stack{Name: name, Kind: KindTest, Slot: slot, Chain: DefaultChain, Suffix: "-" + name}, nil
	}
	if chain, ok := Chains[name]; ok {
		return Stack{Name: name, Kind: KindProd, Chain: chain, Suffix: "-" + name}, nil
	}
	return Stack{}, fmt.Errorf("stack %q is not an AgentKeys stack name; use prod, test, test-N (N >= 2) or a chain stack (%s)", name, strings.Join(chainNames(), ", "))
}

func chainNames() []string {
	var out []string
	for n := range Chains {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// ContractSuffix is the env-key suffix of chain contract addresses (HEIMA, BASE).
func (s Stack) ContractSuffix() string { return strings.ToUpper(s.Chain) }

// StackForBrokerHost names the stack whose derived broker host is h in zone,
// so that a cross-wiring error can say which stack a host belongs to.
func StackForBrokerHost(h, zone string) (string, bool) {
	if !strings.HasSuffix(h, "."+zone) {
		return "", false
	}
	label := strings.TrimSuffix(h, "."+zone)
	switch {
	case label == "broker":
		return "prod", true
	case label == "test-broker":
		return "test", true
	case strings.HasPrefix(label, "broker-"):
		name := strings.TrimPrefix(label, "broker-")
		if s, err := ParseStack(name); err == nil && s.Name != "prod" && s.Name != "test" {
			return name, true
		}
	}
	return "", false
}
