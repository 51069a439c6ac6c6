package components

import (
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/agentkeys/agentkeys-infra/components/componenttest"
)

func validAccountArgs() AccountStackArgs {
	return AccountStackArgs{
		RuleSetName: "agentkeys", GitHubOIDCURL: "https://token.actions.githubusercontent.com", ClientID: "sts.amazonaws.com",
		CIRoleName: "github-actions-agentkeys-deploy", CITrustPolicy: `{"Version":"2012-10-17","Statement":[]}`,
		CIPolicies:         []NamedPolicy{{Name: "p1", Policy: pulumi.String(`{}`)}, {Name: "p2", Policy: pulumi.String(`{}`)}},
		MaxSessionDuration: 3600, TestBoundaryName: "agentkeys-test-boundary", TestBoundaryPolicy: `{}`,
	}
}

// Bad args fail before anything is registered.
func TestAccountStackRejectsIncompleteArgs(t *testing.T) {
	for name, edit := range map[string]func(a *AccountStackArgs){
		"no rule set":     func(a *AccountStackArgs) { a.RuleSetName = "" },
		"no trust":        func(a *AccountStackArgs) { a.CITrustPolicy = "" },
		"no policies":     func(a *AccountStackArgs) { a.CIPolicies = nil },
		"session too big": func(a *AccountStackArgs) { a.MaxSessionDuration = 86400 },
		"no boundary":     func(a *AccountStackArgs) { a.TestBoundaryPolicy = "" },
	} {
		args := validAccountArgs()
		edit(&args)
		rec := componenttest.New("agentkeys", "account")
		err := rec.Run(func(ctx *pulumi.Context) error {
			_, err := NewAccountStack(ctx, "account", &args)
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "AccountStack") {
			t.Errorf("%s: accepted (%v)", name, err)
		}
		if n := len(rec.Resources()); n != 0 {
			t.Errorf("%s: %d resources registered before validation failed", name, n)
		}
	}
}

// One attachment per CI policy, each to the role; only the shared three are protected.
func TestAccountStackProtectsOnlySharedResources(t *testing.T) {
	args := validAccountArgs()
	rec := componenttest.New("agentkeys", "account")
	if err := rec.Run(func(ctx *pulumi.Context) error {
		_, err := NewAccountStack(ctx, "acct", &args)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	protected := map[string]bool{}
	attachments := 0
	for _, r := range rec.Resources() {
		if r.Protect {
			protected[r.Type] = true
		}
		if r.Type == "aws:iam/rolePolicyAttachment:RolePolicyAttachment" {
			attachments++
		}
	}
	want := map[string]bool{
		"aws:ses/receiptRuleSet:ReceiptRuleSet":               true,
		"aws:ses/activeReceiptRuleSet:ActiveReceiptRuleSet":   true,
		"aws:iam/openIdConnectProvider:OpenIdConnectProvider": true,
	}
	if len(protected) != len(want) {
		t.Errorf("protected types %v, want %v", protected, want)
	}
	for k := range want {
		if !protected[k] {
			t.Errorf("%s not protected", k)
		}
	}
	if attachments != 2 {
		t.Errorf("%d attachments, want one per CI policy (2)", attachments)
	}
}
