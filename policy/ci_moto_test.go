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
// attaches them, are accepted and stored unchanged.
func TestMotoAcceptsCIDocuments(t *testing.T) {
	ic, _ := awsClients(t, startMoto(t))
	ctx := context.Background()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: moto rejected: %v", what, err)
		}
	}
	// moto's default account; the documents name it.
	trust, err := policy.CITrust(ciFork.AccountID, "litentry/agentKeys", []string{"main", "release/*"}, []string{"ci-deploy"})
	must("CITrust", err)
	prov, err := ic.CreateOpenIDConnectProvider(ctx, &iam.CreateOpenIDConnectProviderInput{
		Url: aws.String(policy.GitHubOIDCURL), ClientIDList: []string{naming.OIDCAudience},
		ThumbprintList: []string{"6938fd4d98bab03faadb97b34396831e3780aea1"}})
	must("CreateOpenIDConnectProvider", err)
	if got := aws.ToString(prov.OpenIDConnectProviderArn); got != policy.GitHubProviderARN(ciFork.AccountID) {
		t.Errorf("provider ARN %s, policy names %s", got, policy.GitHubProviderARN(ciFork.AccountID))
	}
	_, err = ic.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(naming.CIDeployRole),
		AssumeRolePolicyDocument: aws.String(trust.JSON()), MaxSessionDuration: aws.Int32(policy.CISessionSeconds)})
	must("CreateRole", err)
	// CreateRole stores any text; UpdateAssumeRolePolicy validates.
	_, err = ic.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String(naming.CIDeployRole), PolicyDocument: aws.String(trust.JSON())})
	must("UpdateAssumeRolePolicy", err)
	role, err := ic.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(naming.CIDeployRole)})
	must("GetRole", err)
	sameJSON(t, "CI trust", aws.ToString(role.Role.AssumeRolePolicyDocument), trust)
	if d := aws.ToInt32(role.Role.MaxSessionDuration); d != 3600 {
		t.Errorf("max session %d, want 3600", d)
	}

	docs := []policy.CIPolicy{{Name: policy.TestBoundaryName, Document: policy.TestBoundary(ciFork)}}
	docs = append(docs, ciPolicies(t)...)
	for _, c := range docs {
		out, err := ic.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String(c.Name), PolicyDocument: aws.String(c.Document.JSON())})
		must("CreatePolicy "+c.Name, err)
		v, err := ic.GetPolicyVersion(ctx, &iam.GetPolicyVersionInput{PolicyArn: out.Policy.Arn, VersionId: out.Policy.DefaultVersionId})
		must("GetPolicyVersion "+c.Name, err)
		sameJSON(t, c.Name, aws.ToString(v.PolicyVersion.Document), c.Document)
		if c.Name == policy.TestBoundaryName {
			if got := aws.ToString(out.Policy.Arn); got != policy.TestBoundaryARN(ciFork.AccountID) {
				t.Errorf("boundary ARN %s, CI policy conditions on %s", got, policy.TestBoundaryARN(ciFork.AccountID))
			}
			// A test role carries it as its boundary.
			_, err = ic.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("agentkeys-data-role-test-7"),
				AssumeRolePolicyDocument: aws.String(policy.HostRoleTrust().JSON()), PermissionsBoundary: out.Policy.Arn})
			must("CreateRole with boundary", err)
			continue
		}
		_, err = ic.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String(naming.CIDeployRole), PolicyArn: out.Policy.Arn})
		must("AttachRolePolicy "+c.Name, err)
	}
	att, err := ic.ListAttachedRolePolicies(ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(naming.CIDeployRole)})
	must("ListAttachedRolePolicies", err)
	if len(att.AttachedPolicies) != 3 {
		t.Errorf("%d policies attached to the CI role, want 3", len(att.AttachedPolicies))
	}
}
