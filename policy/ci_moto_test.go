package policy_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/policy"
)

// The account stack's IAM documents, submitted the way the component
// attaches them, are accepted and stored unchanged: both roles' trusts and
// managed policies and the test boundary. (The state bucket's and keys'
// policies are submitted by scripts/bootstrap-state.sh's test.)
func TestMotoAcceptsCIDocuments(t *testing.T) {
	ic, _ := awsClients(t, startMoto(t))
	ctx := context.Background()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: moto rejected: %v", what, err)
		}
	}
	prov, err := ic.CreateOpenIDConnectProvider(ctx, &iam.CreateOpenIDConnectProviderInput{
		Url: aws.String(policy.GitHubOIDCURL), ClientIDList: []string{naming.OIDCAudience},
		ThumbprintList: []string{"6938fd4d98bab03faadb97b34396831e3780aea1"}})
	must("CreateOpenIDConnectProvider", err)
	if got := aws.ToString(prov.OpenIDConnectProviderArn); got != policy.GitHubProviderARN(ciFork.AccountID) {
		t.Errorf("provider ARN %s, policy names %s", got, policy.GitHubProviderARN(ciFork.AccountID))
	}
	b, err := ic.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String(policy.TestBoundaryName), PolicyDocument: aws.String(policy.TestBoundary(ciFork).JSON())})
	must("CreatePolicy boundary", err)
	if got := aws.ToString(b.Policy.Arn); got != policy.TestBoundaryARN(ciFork.AccountID) {
		t.Errorf("boundary ARN %s, CI policy conditions on %s", got, policy.TestBoundaryARN(ciFork.AccountID))
	}
	_, err = ic.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("agentkeys-data-role-test-7"),
		AssumeRolePolicyDocument: aws.String(policy.HostRoleTrust().JSON()), PermissionsBoundary: b.Policy.Arn})
	must("CreateRole with boundary", err)

	testTrust, err := ciTrust.TestTrust(ciFork.AccountID)
	must("TestTrust", err)
	prodTrust, err := ciTrust.ProdTrust(ciFork.AccountID)
	must("ProdTrust", err)
	for _, r := range []struct {
		name  string
		trust policy.Document
		docs  []policy.CIPolicy
	}{
		{policy.CITestRole, testTrust, ciPolicies(t)},
		{policy.CIProdRole, prodTrust, ciProdPolicies(t)},
	} {
		_, err = ic.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(r.name),
			AssumeRolePolicyDocument: aws.String(r.trust.JSON()), MaxSessionDuration: aws.Int32(policy.CISessionSeconds)})
		must("CreateRole "+r.name, err)
		// CreateRole stores any text; UpdateAssumeRolePolicy validates.
		_, err = ic.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String(r.name), PolicyDocument: aws.String(r.trust.JSON())})
		must("UpdateAssumeRolePolicy "+r.name, err)
		role, err := ic.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(r.name)})
		must("GetRole", err)
		sameJSON(t, r.name+" trust", aws.ToString(role.Role.AssumeRolePolicyDocument), r.trust)
		if d := aws.ToInt32(role.Role.MaxSessionDuration); d != 3600 {
			t.Errorf("%s max session %d, want 3600", r.name, d)
		}
		for _, c := range r.docs {
			out, err := ic.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String(c.Name), PolicyDocument: aws.String(c.Document.JSON())})
			must("CreatePolicy "+c.Name, err)
			v, err := ic.GetPolicyVersion(ctx, &iam.GetPolicyVersionInput{PolicyArn: out.Policy.Arn, VersionId: out.Policy.DefaultVersionId})
			must("GetPolicyVersion "+c.Name, err)
			sameJSON(t, c.Name, aws.ToString(v.PolicyVersion.Document), c.Document)
			_, err = ic.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String(r.name), PolicyArn: out.Policy.Arn})
			must("AttachRolePolicy "+c.Name, err)
		}
		att, err := ic.ListAttachedRolePolicies(ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(r.name)})
		must("ListAttachedRolePolicies", err)
		if len(att.AttachedPolicies) != len(r.docs) {
			t.Errorf("%d policies attached to %s, want %d", len(att.AttachedPolicies), r.name, len(r.docs))
		}
	}
}
