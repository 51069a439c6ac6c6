package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/agentkeys/agentkeys-infra/internal/testkit/mototest"
	"github.com/agentkeys/agentkeys-infra/ops/stackcfg"
	"github.com/agentkeys/agentkeys-infra/ops/testkit/stacktest"
	"github.com/agentkeys/agentkeys-infra/policy"
)

// pulumiCLI finds the real CLI (make deps builds bin/pulumi); it skips
// without one, and fails under AGENTKEYS_E2E=1 once the engine tools are
// part of make deps.
func pulumiCLI(t *testing.T) string {
	t.Helper()
	p, err := stackcfg.FindPulumi(filepath.Join("..", ".."))
	if err == nil {
		abs, _ := filepath.Abs(p.Bin)
		return abs
	}
	if _, e := os.Stat(filepath.Join("..", "..", ".ci", "install.d", "engine.sh")); e == nil && os.Getenv("AGENTKEYS_E2E") == "1" {
		t.Fatalf("%v and AGENTKEYS_E2E=1: run make deps", err)
	}
	t.Skipf("%v: set AGENTKEYS_PULUMI or run make deps", err)
	return ""
}

// fleet reads the stacks' outputs and history from a real backend and
// leaves the operator's selected stack, and the workspace file, as they were.
func TestFleetReadsStateWithoutSelecting(t *testing.T) {
	cli := pulumiCLI(t)
	ctx := context.Background()
	mototest.Start(t) // AWS calls go to moto, never to a real endpoint
	home, backend := t.TempDir(), t.TempDir()
	t.Setenv("PULUMI_HOME", home)
	t.Setenv("PULUMI_BACKEND_URL", "file://"+backend)
	t.Setenv("PULUMI_CONFIG_PASSPHRASE", "test")
	t.Setenv("PULUMI_SKIP_UPDATE_CHECK", "true")
	t.Setenv("PULUMI_DIY_BACKEND_NO_LEGACY_WARNING", "true")
	t.Setenv("PATH", filepath.Dir(cli)+string(os.PathListSeparator)+os.Getenv("PATH"))

	dir := project(t, "test-2", "test-3")
	pj, err := os.ReadFile(filepath.Join("..", "..", "Pulumi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Pulumi.yaml"), pj, 0o644); err != nil {
		t.Fatal(err)
	}
	// test-2's state comes from a real `pulumi up` (an inline program in
	// its own workspace): outputs and a history entry.
	const ip = "203.0.113.61"
	st, err := auto.UpsertStackInlineSource(ctx, "test-2", policy.PulumiProject, func(ctx *pulumi.Context) error {
		ctx.Export("eip", pulumi.String(ip))
		ctx.Export("sshSecretKey", pulumi.ToSecret(pulumi.String("do-not-print")))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Up(ctx); err != nil {
		t.Fatal(err)
	}
	// The operator works on test-3 in the project directory.
	run := func(args ...string) string {
		t.Helper()
		c := exec.Command(cli, append(args, "--non-interactive", "--cwd", dir)...)
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("pulumi %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("stack", "init", "test-3")
	run("stack", "select", "test-3")
	// Every workspace file (the inline program's and the project's).
	snapshot := func() map[string]string {
		ws, _ := filepath.Glob(filepath.Join(home, "workspaces", "*"))
		m := map[string]string{}
		for _, f := range ws {
			b, _ := os.ReadFile(f)
			m[f] = string(b)
		}
		return m
	}
	before := snapshot()
	if len(before) == 0 {
		t.Fatal("no workspace file after pulumi stack select")
	}

	// test-3 holds no resources (as after a destroy) but its tagged EIP
	// is still in the account: retained, the operator's to release.
	n3 := names(t, dir, "test-3")
	ec := ec2.NewFromConfig(mototest.Config(t))
	kept, err := ec.AllocateAddress(ctx, &ec2.AllocateAddressInput{TagSpecifications: []ec2types.TagSpecification{{
		ResourceType: ec2types.ResourceTypeElasticIp, Tags: []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String(n3.EIPTag)}},
	}}})
	if err != nil {
		t.Fatal(err)
	}

	n2 := names(t, dir, "test-2")
	code, out, errs := runCLI(t, deps{}, "fleet", "--project-dir", dir, "--doh-url", stacktest.DoH(t, stacktest.Records(n2, ip)),
		"--connect", "*=127.0.0.1:1", "--timeout", "1s")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	var row2, row3 string
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, "test-2 "):
			row2 = l
		case strings.HasPrefix(l, "test-3 "):
			row3 = l
		}
	}
	if !strings.Contains(row2, ip) || !strings.Contains(row2, "9/9 = EIP") || !strings.Contains(row2, "update succeeded") || !strings.Contains(row2, "free") {
		t.Errorf("test-2 row (EIP from outputs, last deploy from history, lock dir free):\n%s", out)
	}
	if !strings.Contains(row3, "never") || !strings.Contains(row3, "retained by a destroy") || !strings.Contains(row3, "release-address --allocation-id "+aws.ToString(kept.AllocationId)) {
		t.Errorf("test-3 row (no history):\n%s", out)
	}
	if strings.Contains(out+errs, "do-not-print") {
		t.Fatal("a secret output was printed")
	}
	if after := snapshot(); !reflect.DeepEqual(before, after) {
		t.Fatalf("fleet changed the workspace files:\n%v\n->\n%v", before, after)
	}
	if cur := run("stack", "--show-name"); cur != "test-3" {
		t.Fatalf("current stack is %q after fleet, want test-3", cur)
	}
}
