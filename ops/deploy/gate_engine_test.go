package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/s3"
	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/common/workspace"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/agentkeys/agentkeys-infra/internal/testkit/mototest"
)

// The gate under the real Pulumi engine (bin/pulumi from `make deps`) with
// the moto-backed pulumi-aws stand-in: a destructive update is refused and
// changes nothing; allowed by name, exactly the previewed plan runs; a plan
// the program no longer matches is refused by the engine itself.

// inlineEngine runs one inline-program stack; the gate reaches it through
// the same PreviewPlanOn/UpPlanOn as AutoEngine.
type inlineEngine struct{ s auto.Stack }

func (e inlineEngine) Preview(ctx context.Context, _ string) (Result, error) {
	_, err := e.s.Preview(ctx)
	return Result{}, err
}
func (e inlineEngine) Up(ctx context.Context, _ string) (Result, error) {
	_, err := e.s.Up(ctx)
	return Result{}, err
}
func (e inlineEngine) Refresh(context.Context, string) (Result, error) {
	return Result{}, errors.New("not used")
}
func (e inlineEngine) Destroy(context.Context, string) (Result, error) {
	return Result{}, errors.New("not used")
}
func (e inlineEngine) LastDeploy(context.Context, string) (LastDeploy, bool, error) {
	return LastDeploy{}, false, nil
}
func (e inlineEngine) Stacks(context.Context) ([]StackInfo, error) { return nil, nil }

// Protected is the Engine method of the engine branch (destroy refusal).
func (e inlineEngine) Protected(context.Context, string) ([]string, error) { return nil, nil }
func (e inlineEngine) PreviewPlan(ctx context.Context, _, file string) (Result, error) {
	return PreviewPlanOn(ctx, e.s, file, nil)
}
func (e inlineEngine) UpPlan(ctx context.Context, _, file string) (Result, error) {
	return UpPlanOn(ctx, e.s, file, nil)
}

// engineTools finds the CLI and PULUMI_HOME `make deps` installs.
func engineTools(t *testing.T) (root, home string) {
	_, file, _, _ := runtime.Caller(0)
	root = filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	home = os.Getenv("AGENTKEYS_PULUMI_HOME")
	if home == "" {
		home = filepath.Join(root, ".pulumi-home")
	}
	var missing []string
	for _, p := range []string{filepath.Join(root, "bin", "pulumi"), filepath.Join(home, "plugins", "resource-aws-v6.83.4", "pulumi-resource-aws")} {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		msg := "real engine not installed (make deps): missing " + strings.Join(missing, ", ")
		if os.Getenv("AGENTKEYS_E2E") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return root, home
}

type gateProgram struct{ bucket, statement, roleDesc string }

func (g *gateProgram) run(ctx *pulumi.Context) error {
	b, err := s3.NewBucketV2(ctx, "prod-vault", &s3.BucketV2Args{Bucket: pulumi.String(g.bucket), ForceDestroy: pulumi.Bool(true)})
	if err != nil {
		return err
	}
	doc := `{"Version":"2012-10-17","Statement":[{"Sid":"` + g.statement + `","Effect":"Deny","Principal":"*","Action":"s3:DeleteBucket","Resource":"arn:aws:s3:::` + g.bucket + `"}]}`
	if _, err := s3.NewBucketPolicy(ctx, "prod-vault-policy", &s3.BucketPolicyArgs{Bucket: b.Bucket, Policy: pulumi.String(doc)}); err != nil {
		return err
	}
	_, err = iam.NewRole(ctx, "prod-data-role", &iam.RoleArgs{
		Name:             pulumi.String("gate-data-role"),
		Description:      pulumi.String(g.roleDesc),
		AssumeRolePolicy: pulumi.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}`),
	})
	return err
}

func TestGateUnderTheRealEngine(t *testing.T) {
	root, home := engineTools(t)
	mototest.Require(t, "moto_server", "make deps")
	mototest.StartPlain(t)
	ctx := context.Background()
	cli, err := auto.NewPulumiCommand(&auto.PulumiCommandOptions{Root: root, SkipVersionCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	backend := t.TempDir()
	prog := &gateProgram{bucket: "gate-vault-123456789012", statement: "KeepV1", roleDesc: "one"}
	s, err := auto.UpsertStackInlineSource(ctx, "prod", "agentkeys", prog.run,
		auto.Pulumi(cli),
		auto.Project(workspace.Project{Name: "agentkeys", Runtime: workspace.NewProjectRuntimeInfo("go", nil),
			Backend: &workspace.ProjectBackend{URL: "file://" + backend}}),
		auto.EnvVars(map[string]string{
			"PULUMI_HOME": home, "PULUMI_CONFIG_PASSPHRASE": "gate-test", "PULUMI_SKIP_UPDATE_CHECK": "true",
			"PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
		}))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetConfig(ctx, "aws:region", auto.ConfigValue{Value: "us-east-1"}); err != nil {
		t.Fatal(err)
	}
	eng := inlineEngine{s}
	cfg := mototest.Config(t)
	s3c := awss3.NewFromConfig(cfg, func(o *awss3.Options) { o.UsePathStyle = true })
	iamc := awsiam.NewFromConfig(cfg)
	live := func() (statement, desc string) {
		t.Helper()
		p, err := s3c.GetBucketPolicy(ctx, &awss3.GetBucketPolicyInput{Bucket: aws.String(prog.bucket)})
		if err != nil {
			t.Fatal(err)
		}
		var d struct{ Statement []struct{ Sid string } }
		_ = json.Unmarshal([]byte(aws.ToString(p.Policy)), &d)
		r, err := iamc.GetRole(ctx, &awsiam.GetRoleInput{RoleName: aws.String("gate-data-role")})
		if err != nil {
			t.Fatal(err)
		}
		return d.Statement[0].Sid, aws.ToString(r.Role.Description)
	}
	var approved []string
	approve := func(stack string, _ *Result, f []Finding) bool { approved = append(approved, stack); return true }
	up := func(d Driver) Outcome {
		t.Helper()
		d.Engine, d.Approve = eng, approve
		return d.Run(ctx, Up, []string{"prod"})[0]
	}

	// 1. Creates only: through the gate, approved once.
	if o := up(Driver{}); o.Status != OK || len(o.Findings) != 0 {
		t.Fatalf("first up: %+v", o)
	}
	if sid, desc := live(); sid != "KeepV1" || desc != "one" || len(approved) != 1 {
		t.Fatalf("after first up: %s %s approved %v", sid, desc, approved)
	}

	// 2. A bucket-policy rewrite is refused; nothing at all is applied, not
	// even the harmless role description in the same plan.
	prog.statement, prog.roleDesc = "OpenV2", "two"
	o := up(Driver{})
	if o.Status != Refused || len(o.Findings) != 1 || o.Findings[0].Name != "prod-vault-policy" ||
		!slices.Equal(o.Findings[0].Keys, []string{"policy"}) {
		t.Fatalf("destructive update: %+v", o)
	}
	if sid, desc := live(); sid != "KeepV1" || desc != "one" {
		t.Fatalf("refused plan changed something: %s %s", sid, desc)
	}

	// 3. Allowed by name: the plan runs.
	if o := up(Driver{Allow: map[string][]string{"prod": {"prod-vault-policy"}}}); o.Status != OK {
		t.Fatalf("allowed: %+v", o)
	}
	if sid, desc := live(); sid != "OpenV2" || desc != "two" {
		t.Fatalf("after the allowed up: %s %s", sid, desc)
	}

	// 4. Reviewed plan, then the program changes: the engine refuses the
	// plan, and nothing is applied.
	dir := t.TempDir()
	prog.roleDesc = "three"
	if o := (Driver{Engine: eng, SavePlanDir: dir}).Run(ctx, Preview, []string{"prod"})[0]; o.Status != OK || len(o.Findings) != 0 {
		t.Fatalf("save plan: %+v", o)
	}
	prog.roleDesc = "four"
	o = up(Driver{PlanFiles: map[string]string{"prod": filepath.Join(dir, "prod.plan.json")}})
	if o.Status != Failed || !strings.Contains(o.Reason, "preview again") || !strings.Contains(o.Reason, "prod-data-role violates plan") {
		t.Fatalf("drifted plan: %+v", o)
	}
	t.Logf("drifted plan refused: %q", o.Reason)
	if _, desc := live(); desc != "two" {
		t.Fatalf("a plan the program no longer matches changed the role to %q", desc)
	}
	// The same reviewed plan with the program it was made from runs as shown.
	prog.roleDesc = "three"
	if o := up(Driver{PlanFiles: map[string]string{"prod": filepath.Join(dir, "prod.plan.json")}}); o.Status != OK {
		t.Fatalf("reviewed plan: %+v", o)
	}
	if _, desc := live(); desc != "three" {
		t.Fatalf("reviewed plan applied %q", desc)
	}

	// 5. A new bucket name replaces the bucket (and its policy): refused.
	prog.bucket = "gate-vault-2-123456789012"
	o = up(Driver{})
	if o.Status != Refused || !strings.Contains(o.Reason, "replace aws:s3/bucketV2:BucketV2 prod-vault") {
		t.Fatalf("replace: %+v", o)
	}
	if _, err := s3c.HeadBucket(ctx, &awss3.HeadBucketInput{Bucket: aws.String("gate-vault-2-123456789012")}); err == nil {
		t.Fatal("the refused replacement created the new bucket")
	}
}
