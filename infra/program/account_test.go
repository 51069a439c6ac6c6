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

const (
	testKeyARN = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
	prodKeyARN = "arn:aws:kms:us-east-1:123456789012:key/22222222-2222-3333-4444-555555555555"
)

func accountRaw() map[string]string {
	return map[string]string{
		"agentkeys:accountId":  componenttest.MockAccount,
		"agentkeys:zone":       "example.org",
		"agentkeys:githubRepo": "litentry/agentKeys",
		"agentkeys:ciBranches": `["main"]`,
		"aws:region":           "us-east-1",
	}
}

// runAccount runs the account program under the mock engine; callerAcct is
// the account the credentials belong to; the lookup of alias keyMissing fails.
func runAccount(t *testing.T, raw map[string]string, callerAcct string, keyMissing string) (*componenttest.Recorder, error) {
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
		name := args["name"].StringValue()
		if name == keyMissing {
			return nil, errors.New("Alias not found: " + name)
		}
		key := map[string]string{policy.TestSecretsKeyAlias: testKeyARN, policy.ProdSecretsKeyAlias: prodKeyARN}[name]
		if key == "" {
			return nil, errors.New("unexpected alias " + name)
		}
		return resource.NewPropertyMapFromMap(map[string]any{
			"name": name, "targetKeyArn": key, "targetKeyId": strings.TrimPrefix(key, "arn:aws:kms:us-east-1:123456789012:key/"),
			"arn": "arn:aws:kms:us-east-1:123456789012:" + args["name"].StringValue(), "id": args["name"].StringValue(),
		}), nil
	}
	rec.Outputs["aws:iam/policy:Policy"] = func(r componenttest.Resource) resource.PropertyMap {
		return resource.PropertyMap{"arn": resource.NewStringProperty("arn:aws:iam::" + componenttest.MockAccount + ":policy/" + r.Str("name"))}
	}
	return rec, rec.Run(Run)
}

func TestAccountStackDeclaresSharedResources(t *testing.T) {
	rec, err := runAccount(t, accountRaw(), componenttest.MockAccount, "")
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

	prodRole := mustFind(t, rec, "aws:iam/role:Role", "account-ci-prod-role")
	for _, c := range []struct {
		role             componenttest.Resource
		name, op, sub    string
		key, notKey, obj string
	}{
		{role, "github-actions-agentkeys-deploy", "StringLike", `["repo:litentry/agentKeys:pull_request","repo:litentry/agentKeys:ref:refs/heads/main"]`,
			testKeyARN, prodKeyARN, "agentkeys/test-*"},
		{prodRole, "github-actions-agentkeys-deploy-prod", "StringEquals", `"repo:litentry/agentKeys:environment:agentkeys-prod"`,
			prodKeyARN, "kms:Decrypt\",\"kms:DescribeKey\",\"kms:Encrypt\",\"kms:GenerateDataKey\"],\"Resource\":\"" + testKeyARN, "agentkeys/prod.*"},
	} {
		if c.role.Str("name") != c.name {
			t.Errorf("CI role name %q, want %s", c.role.Str("name"), c.name)
		}
		if v, _ := c.role.Input("maxSessionDuration"); !v.IsNumber() || v.NumberValue() != 3600 {
			t.Errorf("%s max session %v, want 3600", c.name, v)
		}
		if !c.role.DependsOn(provider.URN) {
			t.Errorf("%s does not wait for the provider its trust names", c.name)
		}
		var trust policy.Document
		if err := json.Unmarshal([]byte(c.role.Str("assumeRolePolicy")), &trust); err != nil {
			t.Fatal(err)
		}
		st := trust.Statement[0]
		if len(trust.Statement) != 1 || st.Action != "sts:AssumeRoleWithWebIdentity" {
			t.Errorf("%s trust must allow only AssumeRoleWithWebIdentity (no TagSession): %s", c.name, c.role.Str("assumeRolePolicy"))
		}
		if !equalJSON(st.Principal, map[string]any{"Federated": "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"}) {
			t.Errorf("%s trust principal %v", c.name, st.Principal)
		}
		if got, _ := json.Marshal(st.Condition[c.op]["token.actions.githubusercontent.com:sub"]); string(got) != c.sub {
			t.Errorf("%s trust sub %s, want %s", c.name, got, c.sub)
		}
		// Its managed policies are attached to it and name its key, never the other's.
		var attached int
		var all strings.Builder
		for _, r := range rec.Resources() {
			if r.Type == "aws:iam/rolePolicyAttachment:RolePolicyAttachment" && strings.HasPrefix(r.Name, "account-"+c.name+"-") &&
				(c.name != "github-actions-agentkeys-deploy" || !strings.HasPrefix(r.Name, "account-github-actions-agentkeys-deploy-prod-")) {
				attached++
				if !r.DependsOn(c.role.URN) {
					t.Errorf("attachment %s does not reference %s", r.Name, c.name)
				}
			}
			if r.Type == "aws:iam/policy:Policy" && strings.HasPrefix(r.Str("name"), c.name+"-") &&
				(c.name != "github-actions-agentkeys-deploy" || !strings.HasPrefix(r.Str("name"), "github-actions-agentkeys-deploy-prod-")) {
				all.WriteString(r.Str("policy"))
			}
		}
		if attached < 3 {
			t.Errorf("%d policies attached to %s", attached, c.name)
		}
		js := all.String()
		if !strings.Contains(js, c.key) || strings.Contains(js, c.notKey) || !strings.Contains(js, "agentkeys-pulumi-state-123456789012/.pulumi/stacks/"+c.obj) {
			t.Errorf("%s policies do not name its own key and state objects only:\n%s", c.name, js)
		}
	}
	if boundary.Str("name") != "agentkeys-test-boundary" || boundary.Protect {
		t.Errorf("boundary policy %q protect=%v", boundary.Str("name"), boundary.Protect)
	}
	// Nothing is imported unless agentkeys:adopt says so.
	for _, r := range rec.Resources() {
		if r.ImportID != "" {
			t.Errorf("%s imported without agentkeys:adopt", r.Name)
		}
	}
}

// agentkeys:adopt imports the account's existing provider, CI role, rule set
// and activation, by the ids the runbook's scripts gave them.
func TestAccountStackAdoptsTheRunbooksResources(t *testing.T) {
	raw := accountRaw()
	raw["agentkeys:adopt"] = `["githubOidcProvider","ciTestRole","ruleSet","activeRuleSet"]`
	rec, err := runAccount(t, raw, componenttest.MockAccount, "")
	if err != nil {
		t.Fatalf("%v\n%s", err, rec.Summary())
	}
	for name, id := range map[string]string{
		"account-github-oidc":     "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com",
		"account-ci-role":         "github-actions-agentkeys-deploy",
		"account-rule-set":        "agentkeys",
		"account-rule-set-active": "agentkeys",
		"account-ci-prod-role":    "",
		"account-test-boundary":   "",
	} {
		var r componenttest.Resource
		for _, x := range rec.Resources() {
			if x.Name == name {
				r = x
			}
		}
		if r.ImportID != id {
			t.Errorf("%s import id %q, want %q", name, r.ImportID, id)
		}
	}
}

func TestAccountStackRefusesWrongAccountOrMissingKey(t *testing.T) {
	rec, err := runAccount(t, accountRaw(), "999999999999", "")
	if err == nil || !strings.Contains(err.Error(), "999999999999") || !strings.Contains(err.Error(), "agentkeys:accountId") {
		t.Errorf("credentials of another account accepted: %v", err)
	}
	if n := len(rec.Resources()); n != 0 {
		t.Errorf("%d resources declared before the account check failed", n)
	}
	for _, alias := range []string{policy.TestSecretsKeyAlias, policy.ProdSecretsKeyAlias} {
		rec, err = runAccount(t, accountRaw(), componenttest.MockAccount, alias)
		if err == nil || !strings.Contains(err.Error(), "scripts/bootstrap-state.sh") || !strings.Contains(err.Error(), alias) {
			t.Errorf("missing secrets key %s not reported with the fix: %v", alias, err)
		}
		if n := len(rec.Resources()); n != 0 {
			t.Errorf("%d resources declared without the key %s", n, alias)
		}
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
