package policy_test

import (
	"strings"
	"testing"

	"github.com/agentkeys/agentkeys-infra/contract"
	"github.com/agentkeys/agentkeys-infra/policy"
)

// The host role is derived from the contract; a call it cannot map is an
// error that names the call, never a silently missing grant.
func TestHostRoleCoversTheContract(t *testing.T) {
	for _, stack := range stackNames {
		n := names(t, stack)
		d, err := policy.HostRolePolicy(n, contract.Catalog(n.Stack.Chain))
		if err != nil {
			t.Fatalf("%s: %v", stack, err)
		}
		eq(t, stack+" host role", d.JSON(), policy.HostRoleInline(n).JSON())
	}
	n := names(t, "test-2")
	svc := func(c contract.AWSCall) []contract.Service {
		return []contract.Service{{Name: "x", AWS: []contract.AWSCall{c}}}
	}
	for _, tc := range []struct {
		name string
		in   []contract.Service
		want string
	}{
		{"unknown resource", svc(contract.AWSCall{Action: "sqs:SendMessage", Resource: "queue"}), `x calls sqs:SendMessage on "queue": no ARN for contract resource "queue"; map it in policy.ContractResource`},
		{"object call without prefix", svc(contract.AWSCall{Action: "s3:GetObject", Resource: "vault-bucket"}), "the whole bucket is never granted"},
		{"prefix on a non-S3 call", svc(contract.AWSCall{Action: "ses:SendEmail", Resource: "mail-identities", Prefix: "x"}), "applies to S3 calls only"},
		{"no call at all", nil, "lists no AWS call"},
	} {
		_, err := policy.HostRolePolicy(n, tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	// An object call gets its prefix in the ARN; calls on one action merge.
	d, err := policy.HostRolePolicy(n, []contract.Service{
		{Name: "a", AWS: []contract.AWSCall{{Action: "s3:GetObject", Resource: "memory-bucket", Prefix: "bots/*/x/*"}}},
		{Name: "b", AWS: []contract.AWSCall{{Action: "s3:GetObject", Resource: "config-bucket", Prefix: "bots/*/x/*"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "merged object grant", d.JSON(), `{"Version":"2012-10-17","Statement":[{"Sid":"S3GetObject","Effect":"Allow","Action":"s3:GetObject",`+
		`"Resource":["arn:aws:s3:::agentkeys-memory-test-2-123456789012/bots/*/x/*","arn:aws:s3:::agentkeys-config-test-2-123456789012/bots/*/x/*"]}]}`)
}

// The host role has no data-bucket grant because creds, memory and config
// refuse requests without the caller's STS credentials. If the contract ever
// restores the instance-profile fallback, this fails before a deploy does.
func TestDataWorkersRequireCallerSTS(t *testing.T) {
	if contract.RequireSTS != "1" {
		t.Fatalf("contract.RequireSTS is %q: creds/memory/config would fall back to the instance profile, which has no data-bucket grant; "+
			"decide the grant in policy.HostRoleInline and the isolation matrix first", contract.RequireSTS)
	}
}
