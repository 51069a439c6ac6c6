package program

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/ses"
	sestypes "github.com/aws/aws-sdk-go-v2/service/ses/types"
	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/common/workspace"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/agentkeys/agentkeys-infra/infra/config"
	"github.com/agentkeys/agentkeys-infra/internal/testkit/mototest"
	gate "github.com/agentkeys/agentkeys-infra/ops/deploy"
	"github.com/agentkeys/agentkeys-infra/policy"
	awsstandin "github.com/agentkeys/agentkeys-infra/test/providers/aws"
)

// Adoption of an account the runbook's scripts set up, under the real Pulumi
// engine with the moto-backed pulumi-aws stand-in, following docs/account.md
// step by step: a plain `up` fails on what exists; with agentkeys:adopt the
// provider, the CI role, the rule set and its activation are imported
// unchanged; without it, the next gated `up` brings the role to the
// program's trust, allowed by name; the legacy inline policy goes by the
// documented aws command.

// seedRunbookAccount creates what provision-ci-deploy-role.sh and
// setup-cloud.sh leave in the account, plus bootstrap-state.sh's keys.
func seedRunbookAccount(t *testing.T, cfg aws.Config) {
	ctx := context.Background()
	ic, sc, kc := iam.NewFromConfig(cfg), ses.NewFromConfig(cfg), kms.NewFromConfig(cfg)
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("seed %s: %v", what, err)
		}
	}
	_, err := ic.CreateOpenIDConnectProvider(ctx, &iam.CreateOpenIDConnectProviderInput{Url: aws.String(policy.GitHubOIDCURL),
		ClientIDList: []string{"sts.amazonaws.com"}, ThumbprintList: []string{"6938fd4d98bab03faadb97b34396831e3780aea1"}})
	must("provider", err)
	oldTrust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"` + policy.GitHubProviderARN("123456789012") +
		`"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"token.actions.githubusercontent.com:aud":"sts.amazonaws.com"},"StringLike":{"token.actions.githubusercontent.com:sub":"repo:litentry/agentKeys:*"}}}]}`
	_, err = ic.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(policy.CITestRole), AssumeRolePolicyDocument: aws.String(oldTrust),
		Description: aws.String("CI deploy role - drives setup-broker-host.sh on the test EC2 via SSM (issue #101)")})
	must("role", err)
	_, err = ic.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(policy.CITestRole), PolicyName: aws.String("agentkeys-ci-deploy-ssm"),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Sid":"SendShellCommandToTestBrokerOnly","Effect":"Allow","Action":"ssm:SendCommand","Resource":["arn:aws:ssm:us-east-1::document/AWS-RunShellScript","arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"]}]}`)})
	must("inline policy", err)
	_, err = sc.CreateReceiptRuleSet(ctx, &ses.CreateReceiptRuleSetInput{RuleSetName: aws.String("agentkeys")})
	must("rule set", err)
	for _, r := range []string{"agentkeys-inbound", "agentkeys-inbound-test"} {
		_, err = sc.CreateReceiptRule(ctx, &ses.CreateReceiptRuleInput{RuleSetName: aws.String("agentkeys"), Rule: &sestypes.ReceiptRule{
			Name: aws.String(r), Enabled: true, Recipients: []string{strings.Replace(r, "agentkeys-inbound", "bots", 1) + ".example.org"}}})
		must("rule "+r, err)
	}
	_, err = sc.SetActiveReceiptRuleSet(ctx, &ses.SetActiveReceiptRuleSetInput{RuleSetName: aws.String("agentkeys")})
	must("activate", err)
	// The two keys of bootstrap-state.sh (its prod key policy is left out:
	// moto applies key-policy denies without their conditions).
	for _, alias := range []string{policy.TestSecretsKeyAlias, policy.ProdSecretsKeyAlias} {
		k, err := kc.CreateKey(ctx, &kms.CreateKeyInput{})
		must("key", err)
		_, err = kc.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: k.KeyMetadata.KeyId})
		must("alias", err)
	}
}

// accountEngine is the account stack under the real engine, its config read
// from the stack's own config as `pulumi config set` writes it.
type accountEngine struct{ s auto.Stack }

func (e accountEngine) Preview(ctx context.Context, _ string) (gate.Result, error) {
	_, err := e.s.Preview(ctx)
	return gate.Result{}, err
}
func (e accountEngine) Up(ctx context.Context, _ string) (gate.Result, error) {
	_, err := e.s.Up(ctx)
	return gate.Result{}, err
}
func (e accountEngine) Refresh(context.Context, string) (gate.Result, error) {
	return gate.Result{}, errors.New("not used")
}
func (e accountEngine) Destroy(context.Context, string) (gate.Result, error) {
	return gate.Result{}, errors.New("not used")
}
func (e accountEngine) LastDeploy(context.Context, string) (gate.LastDeploy, bool, error) {
	return gate.LastDeploy{}, false, nil
}
func (e accountEngine) Stacks(context.Context) ([]gate.StackInfo, error) { return nil, nil }

// Protected is the Engine method of the engine branch (destroy refusal).
func (e accountEngine) Protected(context.Context, string) ([]string, error) { return nil, nil }
func (e accountEngine) PreviewPlan(ctx context.Context, _, file string) (gate.Result, error) {
	return gate.PreviewPlanOn(ctx, e.s, file, nil)
}
func (e accountEngine) UpPlan(ctx context.Context, _, file string) (gate.Result, error) {
	return gate.UpPlanOn(ctx, e.s, file, nil)
}

var accountConfigKeys = []string{"accountId", "zone", "githubRepo", "ciPullRequests", "ciBranches", "ciEnvironments", "ciProdEnvironment", "maxTestSlot", "adopt"}

func inlineAccount(ctx *pulumi.Context) error {
	raw := map[string]string{"aws:region": "us-east-1"}
	for _, k := range accountConfigKeys {
		if v, ok := ctx.GetConfig("agentkeys:" + k); ok {
			raw["agentkeys:"+k] = v
		}
	}
	cfg, err := config.ParseAccount(raw)
	if err != nil {
		return err
	}
	outs, err := declareAccount(ctx, cfg)
	if err != nil {
		return err
	}
	for k, v := range outs {
		ctx.Export(k, v)
	}
	return nil
}

func TestAccountAdoptionUnderTheRealEngine(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	home := os.Getenv("AGENTKEYS_PULUMI_HOME")
	if home == "" {
		home = filepath.Join(root, ".pulumi-home")
	}
	for _, p := range []string{filepath.Join(root, "bin", "pulumi"), filepath.Join(home, "plugins", "resource-aws-v6.83.4", "pulumi-resource-aws")} {
		if _, err := os.Stat(p); err != nil {
			if os.Getenv("AGENTKEYS_E2E") == "1" {
				t.Fatalf("real engine not installed (make deps): %v", err)
			}
			t.Skipf("real engine not installed (make deps): %v", err)
		}
	}
	mototest.Require(t, "aws", "apt-get install awscli")
	mototest.StartWith(t, mototest.Options{Python: awsstandin.MotoFills})
	awsCfg := mototest.Config(t)
	seedRunbookAccount(t, awsCfg)
	ctx := context.Background()
	cli, err := auto.NewPulumiCommand(&auto.PulumiCommandOptions{Root: root, SkipVersionCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := auto.UpsertStackInlineSource(ctx, AccountStackName, "agentkeys", inlineAccount,
		auto.Pulumi(cli),
		auto.Project(workspace.Project{Name: "agentkeys", Runtime: workspace.NewProjectRuntimeInfo("go", nil),
			Backend: &workspace.ProjectBackend{URL: "file://" + t.TempDir()}}),
		auto.EnvVars(map[string]string{"PULUMI_HOME": home, "PULUMI_CONFIG_PASSPHRASE": "adopt-test",
			"PULUMI_SKIP_UPDATE_CHECK": "true", "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true"}))
	if err != nil {
		t.Fatal(err)
	}
	// Pulumi.account.yaml's values (docs/account.md step 5).
	for k, v := range map[string]string{"aws:region": "us-east-1", "agentkeys:accountId": "123456789012", "agentkeys:zone": "example.org",
		"agentkeys:githubRepo": "litentry/agentKeys", "agentkeys:ciPullRequests": "true", "agentkeys:ciProdEnvironment": "agentkeys-prod"} {
		if err := s.SetConfig(ctx, k, auto.ConfigValue{Value: v}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetConfigWithOptions(ctx, "agentkeys:ciBranches[0]", auto.ConfigValue{Value: "main"}, &auto.ConfigOptions{Path: true}); err != nil {
		t.Fatal(err)
	}
	eng := accountEngine{s}
	ic, sc := iam.NewFromConfig(awsCfg), ses.NewFromConfig(awsCfg)
	up := func(d gate.Driver) gate.Outcome {
		t.Helper()
		d.Engine = eng
		return d.Run(ctx, gate.Up, []string{AccountStackName})[0]
	}
	role := func() (trust, desc string) {
		t.Helper()
		r, err := ic.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(policy.CITestRole)})
		if err != nil {
			t.Fatal(err)
		}
		doc, _ := url.QueryUnescape(aws.ToString(r.Role.AssumeRolePolicyDocument))
		return doc, aws.ToString(r.Role.Description)
	}
	oldTrust, oldDesc := role()

	// 1. Without adoption the first up stops on what exists.
	o := up(gate.Driver{})
	if o.Status != gate.Failed || !strings.Contains(strings.ToLower(o.Reason), "exist") {
		t.Fatalf("up over the runbook's resources: %+v", o)
	}

	// 2. docs/account.md: agentkeys:adopt, then the gated up imports them.
	for i, a := range config.Adoptable {
		if err := s.SetConfigWithOptions(ctx, "agentkeys:adopt["+string(rune('0'+i))+"]", auto.ConfigValue{Value: a}, &auto.ConfigOptions{Path: true}); err != nil {
			t.Fatal(err)
		}
	}
	if o := up(gate.Driver{}); o.Status != gate.OK || len(o.Findings) != 0 {
		t.Fatalf("adopting up: %+v", o)
	}
	if tr, d := role(); tr != oldTrust || d != oldDesc {
		t.Errorf("adoption changed the role: %s / %s", tr, d)
	}
	provs, err := ic.ListOpenIDConnectProviders(ctx, &iam.ListOpenIDConnectProvidersInput{})
	if err != nil || len(provs.OpenIDConnectProviderList) != 1 {
		t.Fatalf("providers after adoption: %+v %v", provs, err)
	}
	p, err := ic.GetOpenIDConnectProvider(ctx, &iam.GetOpenIDConnectProviderInput{OpenIDConnectProviderArn: provs.OpenIDConnectProviderList[0].Arn})
	if err != nil || !slices.Equal(p.ThumbprintList, []string{"6938fd4d98bab03faadb97b34396831e3780aea1"}) {
		t.Errorf("provider thumbprints %v %v", p, err)
	}
	active, err := sc.DescribeActiveReceiptRuleSet(ctx, &ses.DescribeActiveReceiptRuleSetInput{})
	if err != nil || aws.ToString(active.Metadata.Name) != "agentkeys" || len(active.Rules) != 2 {
		t.Errorf("active rule set after adoption: %+v %v", active, err)
	}
	if _, err := ic.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(policy.CIProdRole)}); err != nil {
		t.Errorf("prod role not created: %v", err)
	}

	// 3. Adoption off: the next up brings the role to the program's trust;
	// the gate asks for it by name.
	if err := s.RemoveConfig(ctx, "agentkeys:adopt"); err != nil {
		t.Fatal(err)
	}
	o = up(gate.Driver{})
	if o.Status != gate.Refused || !strings.Contains(o.Reason, "--allow account:account-ci-role") {
		t.Fatalf("trust update not gated: %+v", o)
	}
	if tr, _ := role(); tr != oldTrust {
		t.Fatal("the refused plan changed the trust")
	}
	if o := up(gate.Driver{Allow: map[string][]string{AccountStackName: {"account-ci-role"}}}); o.Status != gate.OK {
		t.Fatalf("allowed trust update: %+v", o)
	}
	tr, desc := role()
	cfg, _ := config.ParseAccount(map[string]string{"agentkeys:accountId": "123456789012", "agentkeys:zone": "example.org",
		"agentkeys:githubRepo": "litentry/agentKeys", "agentkeys:ciBranches": `["main"]`, "aws:region": "us-east-1"})
	want, _ := cfg.Trust.TestTrust("123456789012")
	var g, w any
	_ = json.Unmarshal([]byte(tr), &g)
	_ = json.Unmarshal([]byte(want.JSON()), &w)
	if !reflect.DeepEqual(g, w) || !strings.HasPrefix(desc, "GitHub Actions pull requests") {
		t.Errorf("role after the allowed up: %s / %s", tr, desc)
	}

	// 4. The legacy inline policy: the documented command.
	cmd := exec.Command("aws", "--endpoint-url", os.Getenv("AWS_ENDPOINT_URL"), // older CLIs ignore AWS_ENDPOINT_URL
		"iam", "delete-role-policy", "--role-name", policy.CITestRole, "--policy-name", "agentkeys-ci-deploy-ssm")
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "AWS_PROFILE=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, "AWS_DEFAULT_REGION=us-east-1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("documented delete-role-policy: %v %s", err, out)
	}
	inline, _ := ic.ListRolePolicies(ctx, &iam.ListRolePoliciesInput{RoleName: aws.String(policy.CITestRole)})
	att, _ := ic.ListAttachedRolePolicies(ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(policy.CITestRole)})
	if len(inline.PolicyNames) != 0 || len(att.AttachedPolicies) != 3 {
		t.Errorf("test role: inline %v, attached %d (want none and 3)", inline.PolicyNames, len(att.AttachedPolicies))
	}

	// 5. A further up changes nothing.
	if o := up(gate.Driver{}); o.Status != gate.OK || len(o.Findings) != 0 {
		t.Fatalf("steady state: %+v", o)
	}
}
