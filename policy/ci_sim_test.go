package policy_test

import (
	"context"
	"testing"

	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/policy"
	"github.com/agentkeys/agentkeys-infra/test/iamsim"
)

// The CI deploy role, judged by the real evaluator: it can change a test
// slot and not prod/base; only this repository's main branch (or its
// ci-deploy environment) can assume it, and nobody can tag its session.
func TestCIDeployRoleDecisions(t *testing.T) {
	iamsim.Require(t)
	a := ciFork.AccountID
	var ids []iamsim.NamedPolicy
	for _, c := range ciPolicies(t) {
		ids = append(ids, iamsim.NamedPolicy{Name: c.Name, Policy: c.Document})
	}
	ci := "arn:aws:sts::" + a + ":assumed-role/" + naming.CIDeployRole + "/gha-run-1"
	boundary := map[string]any{"iam:PermissionsBoundary": policy.TestBoundaryARN(a)}
	t7 := naming.Derive(mustStack(t, "test-7"), ciFork)
	t1 := naming.Derive(mustStack(t, "test"), ciFork)
	prod := naming.Derive(mustStack(t, "prod"), ciFork)
	base := naming.Derive(mustStack(t, "base"), ciFork)
	state := naming.BucketARN(policy.StateBucket(a))
	inst := "arn:aws:ec2:us-east-1:" + a + ":instance/i-0123456789abcdef0"

	var m matrix
	as := func(want expect, name, action, res string, ctx map[string]any) {
		if ctx == nil {
			ctx = map[string]any{}
		}
		m.add(want, iamsim.Request{Name: name, Principal: ci, Action: action, Resource: res, IdentityPolicies: ids, Context: ctx})
	}
	as(allowed, "update test-7 data role", "iam:PutRolePolicy", t7.DataRoleARN, boundary)
	as(allowed, "create test slot 1 vault role", "iam:CreateRole", t1.ClassRoleARNs["vault"], boundary)
	as(allowed, "create test-7 daemon user", "iam:CreateUser", t7.DaemonUserARN, boundary)
	as(allowed, "key for test-7 daemon user", "iam:CreateAccessKey", t7.DaemonUserARN, nil)
	as(allowed, "attach SSM core to test-7 host role", "iam:AttachRolePolicy", t7.HostRoleARN,
		map[string]any{"iam:PermissionsBoundary": policy.TestBoundaryARN(a), "iam:PolicyARN": policy.SSMCorePolicyARN})
	as(allowed, "test-7 OIDC provider", "iam:CreateOpenIDConnectProvider", t7.OIDCProviderARN, nil)
	as(allowed, "write test-7 vault bucket", "s3:PutObject", naming.BucketARN(t7.DataBuckets["vault"])+"/bots/alice/credentials/k", nil)
	as(allowed, "delete test-7 mail bucket", "s3:DeleteBucket", naming.BucketARN(t7.MailBucket), nil)
	as(allowed, "test-7 SES identity", "ses:CreateEmailIdentity", "arn:aws:ses:us-east-1:"+a+":identity/"+t7.MailDomain, nil)
	as(allowed, "test-7 A record", "route53:ChangeResourceRecordSets", "arn:aws:route53:::hostedzone/Z0EXAMPLE",
		map[string]any{"route53:ChangeResourceRecordSetsNormalizedRecordNames": []string{t7.BrokerHost, t7.WorkerHosts["audit"]},
			"route53:ChangeResourceRecordSetsRecordTypes": []string{"A"}})
	as(allowed, "SSM command to slot 3", "ssm:SendCommand", inst, map[string]any{"ssm:resourceTag/Name": "agentkeys-broker-test-3"})
	as(allowed, "read prod data role (preview)", "iam:GetRole", prod.DataRoleARN, nil)
	as(allowed, "read prod bucket policy (refresh)", "s3:GetBucketPolicy", naming.BucketARN(prod.DataBuckets["vault"]), nil)
	as(allowed, "write test-7 state", "s3:PutObject", state+"/.pulumi/stacks/agentkeys/test-7.json", nil)
	as(allowed, "read prod state (preview)", "s3:GetObject", state+"/.pulumi/stacks/agentkeys/prod.json", nil)
	// The account stack's preview resolves the secrets key's alias.
	as(allowed, "list KMS aliases (kms.LookupAlias)", "kms:ListAliases", "*", nil)

	// EIPs are allocated with their Name tag in the request (TagSpecifications):
	// EC2 authorises AllocateAddress and a CreateTags with ec2:CreateAction.
	eip := "arn:aws:ec2:us-east-1:" + a + ":elastic-ip/eipalloc-0123456789abcdef0"
	tagReq := func(name string) map[string]any {
		return map[string]any{"aws:RequestTag/Name": name, "aws:TagKeys": []string{"Name"}}
	}
	onAllocate := func(name string) map[string]any {
		c := tagReq(name)
		c["ec2:CreateAction"] = "AllocateAddress"
		return c
	}
	for _, tn := range []naming.Names{t7, t1} {
		as(allowed, "allocate "+tn.EIPTag, "ec2:AllocateAddress", eip, tagReq(tn.EIPTag))
		as(allowed, "tag on allocate "+tn.EIPTag, "ec2:CreateTags", eip, onAllocate(tn.EIPTag))
	}
	for _, p := range []naming.Names{prod, base} {
		as(denied, "allocate "+p.EIPTag, "ec2:AllocateAddress", eip, tagReq(p.EIPTag))
		as(denied, "tag on allocate "+p.EIPTag, "ec2:CreateTags", eip, onAllocate(p.EIPTag))
	}
	as(denied, "allocate an untagged EIP", "ec2:AllocateAddress", eip, nil)
	as(denied, "allocate with another tag only", "ec2:AllocateAddress", eip, map[string]any{"aws:RequestTag/Owner": t7.EIPTag, "aws:TagKeys": []string{"Owner"}})
	as(denied, "tag on allocate without a Name", "ec2:CreateTags", eip, map[string]any{"ec2:CreateAction": "AllocateAddress"})
	testEIP := map[string]any{"aws:ResourceTag/Name": t7.EIPTag}
	as(allowed, "retag a test EIP with its name", "ec2:CreateTags", eip, merge(testEIP, map[string]any{"aws:RequestTag/Name": t7.EIPTag, "aws:TagKeys": []string{"Name"}}))
	as(allowed, "add the stack tag to a test EIP", "ec2:CreateTags", eip, merge(testEIP, map[string]any{"aws:RequestTag/agentkeys:stack": "test-7", "aws:TagKeys": []string{"agentkeys:stack"}}))
	for _, p := range []naming.Names{prod, base} {
		as(denied, "rename a test EIP to "+p.EIPTag, "ec2:CreateTags", eip, merge(testEIP, map[string]any{"aws:RequestTag/Name": p.EIPTag, "aws:TagKeys": []string{"Name"}}))
	}
	as(denied, "tag on another create action", "ec2:CreateTags", eip, map[string]any{
		"ec2:CreateAction": "RunInstances", "aws:RequestTag/Name": t7.EIPTag, "aws:TagKeys": []string{"Name"}})
	// KMS needs the key policy too: the default one bootstrap-state.sh leaves
	// in place delegates to IAM.
	keyPolicy := map[string]any{"Version": "2012-10-17", "Statement": []any{map[string]any{
		"Sid": "EnableIAMPolicies", "Effect": "Allow", "Principal": map[string]any{"AWS": "arn:aws:iam::" + a + ":root"},
		"Action": "kms:*", "Resource": "*"}}}
	for _, k := range []struct {
		want expect
		name string
		arn  string
	}{
		{allowed, "decrypt with the secrets key", ciBackend().SecretsKeyARN},
		{denied, "decrypt with another key", "arn:aws:kms:us-east-1:" + a + ":key/99999999-2222-3333-4444-555555555555"},
	} {
		m.add(k.want, iamsim.Request{Name: k.name, Principal: ci, Action: "kms:Decrypt", Resource: k.arn,
			IdentityPolicies: ids, ResourcePolicy: keyPolicy, Context: map[string]any{}})
	}

	for _, p := range []naming.Names{prod, base} {
		s := p.Stack.Name
		as(denied, "update "+s+" data role", "iam:PutRolePolicy", p.DataRoleARN, boundary)
		as(denied, "trust of "+s+" vault role", "iam:UpdateAssumeRolePolicy", p.ClassRoleARNs["vault"], nil)
		as(denied, "key for "+s+" daemon user", "iam:CreateAccessKey", p.DaemonUserARN, nil)
		as(denied, "delete "+s+" OIDC provider", "iam:DeleteOpenIDConnectProvider", p.OIDCProviderARN, nil)
		as(denied, "read "+s+" vault object", "s3:GetObject", naming.BucketARN(p.DataBuckets["vault"])+"/bots/alice/credentials/k", nil)
		as(denied, "delete "+s+" mail bucket", "s3:DeleteBucket", naming.BucketARN(p.MailBucket), nil)
		as(denied, "put "+s+" bucket policy", "s3:PutBucketPolicy", naming.BucketARN(p.DataBuckets["memory"]), nil)
		as(denied, s+" SES identity", "ses:DeleteEmailIdentity", "arn:aws:ses:us-east-1:"+a+":identity/"+p.MailDomain, nil)
		as(denied, s+" broker A record", "route53:ChangeResourceRecordSets", "arn:aws:route53:::hostedzone/Z0EXAMPLE",
			map[string]any{"route53:ChangeResourceRecordSetsNormalizedRecordNames": []string{t7.BrokerHost, p.BrokerHost},
				"route53:ChangeResourceRecordSetsRecordTypes": []string{"A"}})
		as(denied, "SSM command to "+s, "ssm:SendCommand", inst, map[string]any{"ssm:resourceTag/Name": policy.InstanceNameTag(p)})
		as(denied, "write "+s+" state", "s3:PutObject", state+"/.pulumi/stacks/agentkeys/"+s+".json", nil)
	}
	as(denied, "test role without the boundary", "iam:PutRolePolicy", t7.DataRoleARN, nil)
	as(denied, "test user without the boundary", "iam:CreateUser", t7.DaemonUserARN,
		map[string]any{"iam:PermissionsBoundary": "arn:aws:iam::aws:policy/AdministratorAccess"})
	as(denied, "admin policy on a test role", "iam:AttachRolePolicy", t7.HostRoleARN,
		map[string]any{"iam:PermissionsBoundary": policy.TestBoundaryARN(a), "iam:PolicyARN": "arn:aws:iam::aws:policy/AdministratorAccess"})
	as(denied, "TXT record of another name", "route53:ChangeResourceRecordSets", "arn:aws:route53:::hostedzone/Z0EXAMPLE",
		map[string]any{"route53:ChangeResourceRecordSetsNormalizedRecordNames": []string{"example.org"},
			"route53:ChangeResourceRecordSetsRecordTypes": []string{"TXT"}})
	as(denied, "the CI role itself", "iam:PutRolePolicy", naming.RoleARN(a, naming.CIDeployRole), boundary)
	as(xdenied, "step into a test role", "sts:AssumeRole", t7.DataRoleARN, nil)
	as(xdenied, "drop a test role's boundary", "iam:DeleteRolePermissionsBoundary", t7.DataRoleARN, nil)
	as(xdenied, "switch the active rule set", "ses:SetActiveReceiptRuleSet", "*", nil)

	// Trust: who may become the CI role.
	trust, err := policy.CITrust(a, "litentry/agentKeys", []string{"main"}, []string{"ci-deploy"})
	if err != nil {
		t.Fatal(err)
	}
	gh := policy.GitHubProviderARN(a)
	role := naming.RoleARN(a, naming.CIDeployRole)
	keys := []string{policy.GitHubOIDCHost + ":aud", policy.GitHubOIDCHost + ":sub"}
	web := func(want expect, name, principal, action, aud, sub string) {
		m.add(want, iamsim.Request{Name: "trust: " + name, Principal: principal, Action: action, Resource: role, ResourcePolicy: trust,
			Context: map[string]any{policy.GitHubOIDCHost + ":aud": aud, policy.GitHubOIDCHost + ":sub": sub}, UnlistedKeys: keys})
	}
	const wi = "sts:AssumeRoleWithWebIdentity"
	web(allowed, "main branch", gh, wi, "sts.amazonaws.com", "repo:litentry/agentKeys:ref:refs/heads/main")
	web(allowed, "ci-deploy environment", gh, wi, "sts.amazonaws.com", "repo:litentry/agentKeys:environment:ci-deploy")
	web(denied, "another repository", gh, wi, "sts.amazonaws.com", "repo:evil/agentKeys:ref:refs/heads/main")
	web(denied, "a fork's name prefix", gh, wi, "sts.amazonaws.com", "repo:litentry/agentKeys-fork:ref:refs/heads/main")
	web(denied, "another branch", gh, wi, "sts.amazonaws.com", "repo:litentry/agentKeys:ref:refs/heads/feature")
	web(denied, "a pull request", gh, wi, "sts.amazonaws.com", "repo:litentry/agentKeys:pull_request")
	web(denied, "another environment", gh, wi, "sts.amazonaws.com", "repo:litentry/agentKeys:environment:prod")
	web(denied, "wrong audience", gh, wi, "https://github.com/litentry", "repo:litentry/agentKeys:ref:refs/heads/main")
	web(denied, "a broker's provider", naming.OIDCProviderARN(a, "broker.example.org"), wi, "sts.amazonaws.com", "repo:litentry/agentKeys:ref:refs/heads/main")
	web(denied, "session tags", gh, "sts:TagSession", "sts.amazonaws.com", "repo:litentry/agentKeys:ref:refs/heads/main")

	got, err := iamsim.Evaluate(context.Background(), reqs(m))
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range got {
		c := m.cells[i]
		if d.Decision == iamsim.Error || !c.want.ok(d.Decision) {
			t.Errorf("%s: got %s %s, want %s", d.Name, d.Decision, d.Error, c.want)
		}
	}
	t.Logf("CI role matrix: %d requests evaluated", len(got))
}

func reqs(m matrix) []iamsim.Request {
	out := make([]iamsim.Request, len(m.cells))
	for i, c := range m.cells {
		out[i] = c.req
	}
	return out
}

func merge(a, b map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}
