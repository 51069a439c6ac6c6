package program

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"github.com/agentkeys/agentkeys-infra/components"
	"github.com/agentkeys/agentkeys-infra/components/componenttest"
	"github.com/agentkeys/agentkeys-infra/policy"
)

const testKeyARN = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"

func accountRaw() map[string]string {
	return map[string]string{
		"agentkeys:accountId":      componenttest.MockAccount,
		"agentkeys:zone":           "example.org",
		"agentkeys:githubRepo":     "litentry/agentKeys",
		"agentkeys:ciBranches":     `["main"]`,
		"agentkeys:ciEnvironments": `["ci-deploy"]`,
		"aws:region":               "us-east-1",
	}
}

// runAccount runs the account program under the mock engine; callerAcct is
// the account the credentials belong to, keyMissing makes the KMS alias lookup fail.
func runAccount(t *testing.T, raw map[string]string, callerAcct string, keyMissing bool) (*componenttest.Recorder, error) {
	t.Helper()
	js, _ := json.Marshal(raw)
	t.Setenv("PULUMI_CONFIG", string(js))
	rec := componenttest.New("agentkeys", AccountStackName)
	rec.Invokes["aws:index/getCallerIdentity:getCallerIdentity"] = func(resource.PropertyMap) (resource.PropertyMap, error) {
		return resource.NewPropertyMapFromMap(map[string]any{
			"accountId": callerAcct, "arn": "arn:aws:iam::" + callerAcct + ":user/agentkeys-admin", "id": callerAcct, "userId": "AIDAEXAMPLE",
		}), nil
	}
	rec.Invokes["aws:kms/getAlias:getAlias"] = func(args resource.PropertyMap) (resource.PropertyMap, error) {
		if keyMissing {
			return nil, errors.New("Alias not found: " + args["name"].StringValue())
		}
		return resource.NewPropertyMapFromMap(map[string]any{
			"name": args["name"].StringValue(), "targetKeyArn": testKeyARN, "targetKeyId": "11111111-2222-3333-4444-555555555555",
			"arn": "arn:aws:kms:us-east-1:123456789012:" + args["name"].StringValue(), "id": args["name"].StringValue(),
		}), nil
	}
	rec.Outputs["aws:iam/policy:Policy"] = func(r componenttest.Resource) resource.PropertyMap {
		return resource.PropertyMap{"arn": resource.NewStringProperty("arn:aws:iam::" + componenttest.MockAccount + ":policy/" + r.Str("name"))}
	}
	return rec, rec.Run(Run)
}

func TestAccountStackDeclaresSharedResources(t *testing.T) {
	rec, err := runAccount(t, accountRaw(), componenttest.MockAccount, false)
	if err != nil {
		t.Fatalf("%v\n%s", err, rec.Summary())
	}
	comp, ok := rec.Find(components.AccountStackType, "account")
	if !ok {
		t.Fatalf("no AccountStack component:\n%s", rec.Summary())
	}
	// Once for the component, once for the stack's exports.
	if rec.OutputsRegistered() != 2 {
		t.Errorf("outputs registered %d times, want 2 (component + stack)", rec.OutputsRegistered())
	}
	for _, r := range rec.Resources() {
		if r.Custom && r.Parent != comp.URN {
			t.Errorf("%s %s is not parented to the AccountStack", r.Type, r.Name)
		}
	}

	ruleSet := mustFind(t, rec, "aws:ses/receiptRuleSet:ReceiptRuleSet", "account-rule-set")
	active := mustFind(t, rec, "aws:ses/activeReceiptRuleSet:ActiveReceiptRuleSet", "account-rule-set-active")
	provider := mustFind(t, rec, "aws:iam/openIdConnectProvider:OpenIdConnectProvider", "account-github-oidc")
	role := mustFind(t, rec, "aws:iam/role:Role", "account-ci-role")
	boundary := mustFind(t, rec, "aws:iam/policy:Policy", "account-test-boundary")

	if got := ruleSet.Str("ruleSetName"); got != "agentkeys" {
		t.Errorf("rule set name %q, want agentkeys", got)
	}
	if got := active.Str("ruleSetName"); got != "agentkeys" {
		t.Errorf("activated rule set %q, want agentkeys", got)
	}
	if !active.DependsOn(ruleSet.URN) {
		t.Error("the activation does not wait for the rule set")
	}
	// Destroying the account stack must be refused while these exist.
	for _, r := range []componenttest.Resource{ruleSet, active, provider} {
		if !r.Protect {
			t.Errorf("%s is not protected", r.Name)
		}
	}
	if provider.Str("url") != "https://token.actions.githubusercontent.com" {
		t.Errorf("provider url %q", provider.Str("url"))
	}
	if got := provider.Plain()["clientIdLists"]; !equalJSON(got, []any{"sts.amazonaws.com"}) {
		t.Errorf("provider client ids %v", got)
	}

	if role.Str("name") != "github-actions-agentkeys-deploy" {
		t.Errorf("CI role name %q", role.Str("name"))
	}
	if v, _ := role.Input("maxSessionDuration"); !v.IsNumber() || v.NumberValue() != 3600 {
		t.Errorf("CI role max session %v, want 3600", v)
	}
	if !role.DependsOn(provider.URN) {
		t.Error("CI role does not wait for the provider its trust names")
	}
	var trust policy.Document
	if err := json.Unmarshal([]byte(role.Str("assumeRolePolicy")), &trust); err != nil {
		t.Fatal(err)
	}
	st := trust.Statement[0]
	if len(trust.Statement) != 1 || st.Action != "sts:AssumeRoleWithWebIdentity" {
		t.Errorf("trust must allow only AssumeRoleWithWebIdentity (no TagSession): %s", role.Str("assumeRolePolicy"))
	}
	if !equalJSON(st.Principal, map[string]any{"Federated": "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"}) {
		t.Errorf("trust principal %v", st.Principal)
	}
	if !equalJSON(st.Condition["StringLike"]["token.actions.githubusercontent.com:sub"],
		[]any{"repo:litentry/agentKeys:ref:refs/heads/main", "repo:litentry/agentKeys:environment:ci-deploy"}) {
		t.Errorf("trust sub %v", st.Condition["StringLike"])
	}

	// Each CI managed policy is attached to the role and carries the key behind the alias.
	var attached int
	var all strings.Builder
	for _, r := range rec.Resources() {
		if r.Type == "aws:iam/rolePolicyAttachment:RolePolicyAttachment" {
			attached++
			if !r.DependsOn(role.URN) {
				t.Errorf("attachment %s does not reference the CI role", r.Name)
			}
		}
		if r.Type == "aws:iam/policy:Policy" && strings.HasPrefix(r.Str("name"), "github-actions-agentkeys-deploy-") {
			all.WriteString(r.Str("policy"))
		}
	}
	if attached != 3 {
		t.Errorf("%d policies attached to the CI role, want 3", attached)
	}
	if !strings.Contains(all.String(), testKeyARN) || !strings.Contains(all.String(), "agentkeys-pulumi-state-123456789012") {
		t.Error("CI policies do not name the secrets key and the state bucket")
	}
	if boundary.Str("name") != "agentkeys-test-boundary" || boundary.Protect {
		t.Errorf("boundary policy %q protect=%v", boundary.Str("name"), boundary.Protect)
	}
}

func TestAccountStackRefusesWrongAccountOrMissingKey(t *testing.T) {
	rec, err := runAccount(t, accountRaw(), "999999999999", false)
	if err == nil || !strings.Contains(err.Error(), "999999999999") || !strings.Contains(err.Error(), "agentkeys:accountId") {
		t.Errorf("credentials of another account accepted: %v", err)
	}
	if n := len(rec.Resources()); n != 0 {
		t.Errorf("%d resources declared before the account check failed", n)
	}
	rec, err = runAccount(t, accountRaw(), componenttest.MockAccount, true)
	if err == nil || !strings.Contains(err.Error(), "scripts/bootstrap-state.sh") {
		t.Errorf("missing secrets key not reported with the fix: %v", err)
	}
	if n := len(rec.Resources()); n != 0 {
		t.Errorf("%d resources declared without a secrets key", n)
	}
}

func mustFind(t *testing.T, rec *componenttest.Recorder, typ, name string) componenttest.Resource {
	t.Helper()
	r, ok := rec.Find(typ, name)
	if !ok {
		t.Fatalf("no %s %s:\n%s", typ, name, rec.Summary())
	}
	return r
}

func equalJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
