package components

import (
	"slices"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/agentkeys/agentkeys-infra/components/componenttest"
)

func validAccountArgs() AccountStackArgs {
	return AccountStackArgs{
		RuleSetName: "agentkeys", GitHubOIDCURL: "https://token.actions.githubusercontent.com", ClientID: "sts.amazonaws.com",
		CIRoles: []CIRoleArgs{
			{Key: "ci-role", Name: "github-actions-agentkeys-deploy", Description: "test", TrustPolicy: `{"Version":"2012-10-17","Statement":[]}`,
				Policies: []NamedPolicy{{Name: "p1", Policy: pulumi.String(`{}`)}, {Name: "p2", Policy: pulumi.String(`{}`)}}},
			{Key: "ci-prod-role", Name: "github-actions-agentkeys-deploy-prod", Description: "prod", TrustPolicy: `{"Version":"2012-10-17","Statement":[]}`,
				Policies: []NamedPolicy{{Name: "p3", Policy: pulumi.String(`{}`)}}},
		},
		MaxSessionDuration: 3600, TestBoundaryName: "agentkeys-test-boundary", TestBoundaryPolicy: `{}`,
	}
}

// Bad args fail before anything is registered.
func TestAccountStackRejectsIncompleteArgs(t *testing.T) {
	for name, edit := range map[string]func(a *AccountStackArgs){
		"no rule set":     func(a *AccountStackArgs) { a.RuleSetName = "" },
		"no roles":        func(a *AccountStackArgs) { a.CIRoles = nil },
		"no trust":        func(a *AccountStackArgs) { a.CIRoles[1].TrustPolicy = "" },
		"no policies":     func(a *AccountStackArgs) { a.CIRoles[0].Policies = nil },
		"same role twice": func(a *AccountStackArgs) { a.CIRoles[1].Name = a.CIRoles[0].Name },
		"non-ASCII":       func(a *AccountStackArgs) { a.CIRoles[0].Description = "deploy — test" },
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
	if attachments != 3 {
		t.Errorf("%d attachments, want one per CI policy (3)", attachments)
	}
	// Nothing is imported unless asked; the provider's thumbprints are never managed.
	for _, r := range rec.Resources() {
		if r.ImportID != "" {
			t.Errorf("%s imported without adoption", r.Name)
		}
	}
	if p, _ := rec.Find("aws:iam/openIdConnectProvider:OpenIdConnectProvider", "acct-github-oidc"); !slices.Equal(p.IgnoreChanges, []string{"thumbprintLists"}) {
		t.Errorf("provider ignoreChanges %v", p.IgnoreChanges)
	}
}

// Adoption imports exactly the named resources, by the ids pulumi-aws
// imports them with, and keeps their live values for that run only.
func TestAccountStackAdoptsByImport(t *testing.T) {
	args := validAccountArgs()
	args.CIRoles[0].Adopt = true
	args.Adopt = AdoptArgs{GitHubProviderARN: "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com", RuleSet: true, ActiveRuleSet: true}
	rec := componenttest.New("agentkeys", "account")
	if err := rec.Run(func(ctx *pulumi.Context) error {
		_, err := NewAccountStack(ctx, "account", &args)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		id     string
		ignore []string
	}{
		"account-rule-set":        {"agentkeys", nil},
		"account-rule-set-active": {"agentkeys", nil},
		"account-github-oidc":     {args.Adopt.GitHubProviderARN, []string{"thumbprintLists", "tags"}},
		"account-ci-role":         {"github-actions-agentkeys-deploy", []string{"assumeRolePolicy", "description", "maxSessionDuration", "tags"}},
	}
	imported := 0
	for _, r := range rec.Resources() {
		w, ok := want[r.Name]
		if !ok {
			if r.ImportID != "" {
				t.Errorf("%s imported, not asked for", r.Name)
			}
			continue
		}
		imported++
		if r.ImportID != w.id || !slices.Equal(r.IgnoreChanges, w.ignore) {
			t.Errorf("%s: import %q ignore %v, want %q %v", r.Name, r.ImportID, r.IgnoreChanges, w.id, w.ignore)
		}
	}
	if imported != len(want) {
		t.Errorf("%d adopted resources declared, want %d:\n%s", imported, len(want), rec.Summary())
	}
}
