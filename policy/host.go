package policy

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/naming"
)

// HostRoleInline (§6.1) grants the host role exactly the AWS calls the
// services make with the instance profile (contract.Service.AWS), each on
// this stack's resource, and nothing else:
//   - no sts:AssumeRole: the broker mints STS credentials with
//     AssumeRoleWithWebIdentity on its own JWT, anonymously (research §6);
//   - no data-bucket object access: creds, memory and config run with
//     AGENTKEYS_WORKER_REQUIRE_STS=1 (contract.RequireSTS) and use only the
//     caller's STS credentials; the email worker lists key names under
//     bots/<omni>/inbound/ of the vault bucket, which is in the contract.
func HostRoleInline(n naming.Names) Document {
	d, err := HostRolePolicy(n, contract.Catalog(n.Stack.Chain))
	if err != nil {
		// The catalog is static: TestHostRoleCoversTheContract fails first.
		panic("policy: " + err.Error())
	}
	return d
}

// HostRolePolicy grants every AWS call of services: one statement per action
// and condition, its resources the union of what the calls name.
func HostRolePolicy(n naming.Names, services []contract.Service) (Document, error) {
	type group struct {
		st        Statement
		resources []string
	}
	var order []string
	groups := map[string]*group{}
	for _, svc := range services {
		for _, c := range svc.AWS {
			res, cond, err := callTarget(n, c)
			if err != nil {
				return Document{}, fmt.Errorf("host role: %s calls %s on %q: %w", svc.Name, c.Action, c.Resource, err)
			}
			cj, _ := json.Marshal(cond)
			key := c.Action + " " + string(cj)
			g, ok := groups[key]
			if !ok {
				g = &group{st: Statement{Effect: allow, Action: c.Action, Condition: cond}}
				groups[key] = g
				order = append(order, key)
			}
			for _, r := range res {
				if !contains(g.resources, r) {
					g.resources = append(g.resources, r)
				}
			}
		}
	}
	if len(order) == 0 {
		return Document{}, fmt.Errorf("host role: the contract lists no AWS call; an empty inline policy is invalid")
	}
	d := Document{Version: Version}
	sids := map[string]int{}
	for _, k := range order {
		g := groups[k]
		sid := sidOf(g.st.Action.(string))
		if sids[sid]++; sids[sid] > 1 {
			sid = fmt.Sprintf("%s%d", sid, sids[sid])
		}
		g.st.Sid = sid
		if len(g.resources) == 1 {
			g.st.Resource = g.resources[0]
		} else {
			g.st.Resource = g.resources
		}
		d.Statement = append(d.Statement, g.st)
	}
	return d, nil
}

// ContractResource maps a symbolic resource of contract.AWSCall to this
// stack's ARNs.
func ContractResource(n naming.Names, sym string) ([]string, error) {
	switch sym {
	case "sender-identity":
		return []string{sesIdentityARN(n, n.Sender)}, nil
	case "mail-identities":
		return SESIdentityARNs(n), nil
	case "mail-bucket":
		return []string{naming.BucketARN(n.MailBucket)}, nil
	}
	if class, ok := strings.CutSuffix(sym, "-bucket"); ok && n.DataBuckets[class] != "" {
		return []string{naming.BucketARN(n.DataBuckets[class])}, nil
	}
	return nil, fmt.Errorf("no ARN for contract resource %q; map it in policy.ContractResource", sym)
}

// callTarget is the resources and condition one call needs. A list call is
// held to its prefix with s3:prefix; an object call gets the prefix in its ARN.
func callTarget(n naming.Names, c contract.AWSCall) ([]string, map[string]map[string]any, error) {
	res, err := ContractResource(n, c.Resource)
	if err != nil {
		return nil, nil, err
	}
	if !strings.HasPrefix(c.Action, "s3:") {
		if c.Prefix != "" {
			return nil, nil, fmt.Errorf("a prefix (%q) applies to S3 calls only", c.Prefix)
		}
		return res, nil, nil
	}
	if c.Action == "s3:ListBucket" {
		if c.Prefix == "" {
			return res, nil, nil
		}
		return res, map[string]map[string]any{"StringLike": {"s3:prefix": c.Prefix}}, nil
	}
	if c.Prefix == "" {
		return nil, nil, fmt.Errorf("an S3 object call needs a key prefix; the whole bucket is never granted")
	}
	for i := range res {
		res[i] += "/" + c.Prefix
	}
	return res, nil, nil
}

func sesIdentityARN(n naming.Names, identity string) string {
	return "arn:aws:ses:" + n.Region + ":" + acct(n) + ":identity/" + identity
}

// sidOf turns "ses:GetEmailIdentity" into "SesGetEmailIdentity".
func sidOf(action string) string {
	svc, op, _ := strings.Cut(action, ":")
	var b strings.Builder
	for _, part := range strings.FieldsFunc(svc, func(r rune) bool { return r == '-' }) {
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	b.WriteString(op)
	return b.String()
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
