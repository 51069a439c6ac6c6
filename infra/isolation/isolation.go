// Package isolation checks that no two stacks declare the same physical name:
// a bucket, role, user, receipt rule, instance profile, hostname, EIP tag or
// OIDC provider URL owned by two stacks would let one stack's deploy or
// destroy touch another's.
package isolation

import (
	"fmt"
	"sort"
	"strings"

	"github.com/agentkeys/agentkeys-infra/infra/plan"
	"github.com/agentkeys/agentkeys-infra/naming"
)

// Shared is the documented set of names several stacks may declare.
var Shared = map[string]bool{
	"ses-rule-set:" + naming.SharedRuleSet: true,
}

// Claim is one physical name declared by one stack.
type Claim struct {
	Kind, Name, Stack, URN string
}

// kind classifies a resource type; resources without a stack-owned physical
// name (attachments, policies keyed by their parent) are not claims.
func kind(typ string) string {
	switch typ {
	case "aws:s3/bucketV2:BucketV2", "aws:s3/bucket:Bucket":
		return "bucket"
	case "aws:iam/role:Role":
		return "role"
	case "aws:iam/user:User":
		return "user"
	case "aws:iam/instanceProfile:InstanceProfile":
		return "instance-profile"
	case "aws:ses/receiptRule:ReceiptRule":
		return "receipt-rule"
	case "aws:ses/receiptRuleSet:ReceiptRuleSet":
		return "ses-rule-set"
	case "aws:sesv2/emailIdentity:EmailIdentity":
		return "ses-identity"
	case "aws:route53/record:Record":
		return "dns-record"
	case "aws:ec2/eip:Eip", "aws:ec2/tag:Tag":
		return "eip-tag"
	case "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
		return "oidc-provider"
	}
	return ""
}

// Claims lists the physical names a plan declares.
func Claims(p *plan.Plan) []Claim {
	var out []Claim
	for _, r := range p.Resources {
		k := kind(r.Type)
		if k == "" {
			continue
		}
		name := r.PhysicalName()
		if name == "" || name == plan.Unknown {
			continue
		}
		if k == "dns-record" {
			if t, _ := r.Inputs["type"].(string); t != "" {
				name = t + " " + name
			}
		}
		out = append(out, Claim{Kind: k, Name: name, Stack: p.Stack, URN: r.URN})
	}
	return out
}

// Collision is one name declared by two stacks.
type Collision struct{ A, B Claim }

func (c Collision) String() string {
	return fmt.Sprintf("%s %q is declared by stack %s (%s) and stack %s (%s)", c.A.Kind, c.A.Name, c.A.Stack, c.A.URN, c.B.Stack, c.B.URN)
}

// Check returns every collision between the plans, outside the shared set.
func Check(plans []*plan.Plan) []Collision {
	seen := map[string]Claim{}
	var out []Collision
	for _, p := range plans {
		for _, c := range Claims(p) {
			key := c.Kind + ":" + c.Name
			if Shared[key] {
				continue
			}
			if prev, ok := seen[key]; ok && prev.Stack != c.Stack {
				out = append(out, Collision{A: prev, B: c})
				continue
			}
			seen[key] = c
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// Error joins collisions into one error, or nil.
func Error(cs []Collision) error {
	if len(cs) == 0 {
		return nil
	}
	lines := make([]string, len(cs))
	for i, c := range cs {
		lines[i] = c.String()
	}
	return fmt.Errorf("%d physical names are declared by two stacks:\n  %s", len(cs), strings.Join(lines, "\n  "))
}
