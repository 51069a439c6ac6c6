package e2e

// The program under the real Pulumi engine, driven as CI drives it:
// `agentkeys deploy` (the Automation API with the program compiled in),
// a file backend in a temporary directory, the committed awskms secrets
// provider backed by moto's KMS, the real pulumi-command provider over real
// SSH to the namespaced sshd host of this package, and the moto-backed
// stand-ins for pulumi-aws and pulumi-tls (test/providers). `make
// test-engine` runs these tests (TestEngine*); `make test-e2e` skips them.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/ses"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	pconfig "github.com/pulumi/pulumi/sdk/v3/go/common/resource/config"

	hostagente2e "github.com/agentkeys/agentkeys-infra/hostagent/e2e"
	"github.com/agentkeys/agentkeys-infra/infra/isolation"
	"github.com/agentkeys/agentkeys-infra/infra/offline"
	"github.com/agentkeys/agentkeys-infra/infra/program"
	"github.com/agentkeys/agentkeys-infra/internal/testkit/mototest"
	awsstandin "github.com/agentkeys/agentkeys-infra/test/providers/aws"
)

// eipPlanFill pins the address moto allocates for an EIP tagged with a
// Name the test lists in AGENTKEYS_MOTO_EIPS (moto picks random 127.x.y.z
// addresses): the stand-in host of that stack listens there.
const eipPlanFill = `
import os as _os, json as _json
from moto.ec2.models import elastic_ip_addresses as _eipm
_eip_plan = _json.loads(_os.environ.get("AGENTKEYS_MOTO_EIPS", "{}"))
_orig_alloc = _eipm.ElasticAddressBackend.allocate_address
def _alloc(self, domain, address=None, tags=None):
    name = (tags or {}).get("Name")
    if address is None and name in _eip_plan:
        address = _eip_plan[name]
    return _orig_alloc(self, domain, address=address, tags=tags)
_eipm.ElasticAddressBackend.allocate_address = _alloc
`

// engineRun is one test's real-engine setup.
type engineRun struct {
	t         *testing.T
	tools     toolset
	agentkeys string // the operator CLI binary
	agent     string // prebuilt host agent (AGENTKEYS_HOSTAGENT_BINARY)
	project   string // Pulumi.yaml and the stack files
	backend   string // file backend directory
	log       string // engine progress of every command
	aws       awsClients
	dataKey   []byte // the stack files' data key (KMS-encrypted in encryptedkey)
	encKey    string
	figures   []string
}

type awsClients struct {
	cfg   aws.Config
	iam   *iam.Client
	s3    *s3.Client
	ec2   *ec2.Client
	r53   *route53.Client
	ses   *ses.Client
	sesv2 *sesv2.Client
	kms   *kms.Client
}

// outcome is `agentkeys deploy --json` output.
type outcome struct {
	Stack   string        `json:"stack"`
	Action  string        `json:"action"`
	Status  string        `json:"status"`
	Reason  string        `json:"reason"`
	Notes   []string      `json:"notes"`
	Preview *engineResult `json:"preview"`
	Result  *engineResult `json:"result"`
}

type engineResult struct {
	Counts map[string]int `json:"counts"`
	Steps  []struct {
		Op   string `json:"op"`
		URN  string `json:"urn"`
		Type string `json:"type"`
	} `json:"steps"`
	Outputs map[string]any `json:"outputs"`
}

func (r *engineResult) changes() int {
	if r == nil {
		return 0
	}
	n := 0
	for op, c := range r.Counts {
		if op != "same" && op != "read" {
			n += c
		}
	}
	return n
}

// newEngineRun starts moto (with the fills and the EIP plan), bootstraps
// the account's state bucket and KMS key with scripts/bootstrap-state.sh,
// and builds the operator CLI and the host agent.
func newEngineRun(t *testing.T, eips map[string]string) *engineRun {
	t.Helper()
	e := &engineRun{t: t, tools: requireEngineTools(t)}
	mototest.Require(t, "aws", "bash .ci/install.d/account.sh")
	plan, _ := json.Marshal(eips)
	t.Setenv("AGENTKEYS_MOTO_EIPS", string(plan))
	mototest.StartWith(t, mototest.Options{ManagedPolicies: true, Python: awsstandin.MotoFills + eipPlanFill})
	cfg := mototest.Config(t)
	e.aws = awsClients{cfg: cfg, iam: iam.NewFromConfig(cfg), s3: s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }),
		ec2: ec2.NewFromConfig(cfg), r53: route53.NewFromConfig(cfg), ses: ses.NewFromConfig(cfg), sesv2: sesv2.NewFromConfig(cfg), kms: kms.NewFromConfig(cfg)}

	root := repoRoot(t)
	boot := exec.Command("bash", filepath.Join(root, "scripts", "bootstrap-state.sh"), "--region", "us-east-1", "--account", mototest.Account)
	// The aws CLI reads an empty AWS_PROFILE as a profile named "".
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_PROFILE=") {
			boot.Env = append(boot.Env, kv)
		}
	}
	out, err := boot.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/bootstrap-state.sh against moto: %v\n%s", err, out)
	}
	// The prod key's policy denies the test CI role through an
	// aws:PrincipalArn condition; moto applies a Deny without its conditions,
	// so the key would refuse everyone here. The deny is the IAM evaluator's
	// to judge (policy.TestCIPermissionMatrix); here the key keeps its allows.
	// ListAliases names the key without consulting its policy.
	aliases, err := e.aws.kms.ListAliases(context.Background(), &kms.ListAliasesInput{})
	var prodKey string
	for _, a := range aliases.Aliases {
		if aws.ToString(a.AliasName) == "alias/agentkeys-pulumi-prod" {
			prodKey = aws.ToString(a.TargetKeyId)
		}
	}
	if err == nil && prodKey == "" {
		err = errors.New("alias/agentkeys-pulumi-prod not found")
	}
	if err == nil {
		_, err = e.aws.kms.PutKeyPolicy(context.Background(), &kms.PutKeyPolicyInput{KeyId: aws.String(prodKey), PolicyName: aws.String("default"),
			Policy: aws.String(`{"Version":"2012-10-17","Statement":[{"Sid":"Account","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + mototest.Account + `:root"},"Action":"kms:*","Resource":"*"}]}`)})
	}
	if err != nil {
		t.Fatalf("resetting the prod key's policy for moto: %v", err)
	}
	bin := t.TempDir()
	e.agentkeys = filepath.Join(bin, "agentkeys")
	if out, err := exec.Command("go", "build", "-o", e.agentkeys, filepath.Join(root, "cmd", "agentkeys")).CombinedOutput(); err != nil {
		t.Fatalf("building agentkeys: %v\n%s", err, out)
	}
	// The deploy's project dir is a test copy, not a checkout: ship the
	// agent prebuilt, as AGENTKEYS_HOSTAGENT_BINARY lets an operator do.
	t.Setenv(program.AgentBinaryEnv, "")
	e.agent, _, err = program.AgentBinary(root, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	e.project = t.TempDir()
	copyFile(t, filepath.Join(root, "Pulumi.yaml"), filepath.Join(e.project, "Pulumi.yaml"))
	e.backend = t.TempDir()
	e.log = filepath.Join(t.TempDir(), "engine.log")
	// One data key for the test stacks' files, encrypted by the test side's
	// KMS key as `pulumi config set --secret` would write it.
	e.dataKey = make([]byte, 32)
	_, _ = rand.Read(e.dataKey)
	enc, err := e.aws.kms.Encrypt(context.Background(), &kms.EncryptInput{KeyId: aws.String("alias/agentkeys-pulumi-test"), Plaintext: e.dataKey})
	if err != nil {
		t.Fatalf("KMS encrypt: %v", err)
	}
	e.encKey = base64.StdEncoding.EncodeToString(enc.CiphertextBlob)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(e.log)
			t.Logf("engine progress (tail):\n%s", tail(string(b), 12000))
		}
	})
	return e
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	must(t, err)
	must(t, os.WriteFile(to, b, 0o644))
}

// stackFile writes Pulumi.<stack>.yaml as an operator would: the committed
// template (comments and all) with the FORK placeholders replaced and the
// deployment's keys added; secret values encrypted under the file's data
// key; withKey adds the encryptedkey line `pulumi config set --secret` writes.
func (e *engineRun) stackFile(stack, template string, replace, set, secret map[string]string, withKey bool) {
	t := e.t
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), template))
	must(t, err)
	s := string(b)
	for k, v := range replace {
		re := regexp.MustCompile(`(?m)^(  ` + regexp.QuoteMeta(k) + `:) .*?(\s+#.*)?$`)
		if !re.MatchString(s) {
			t.Fatalf("%s has no %s line", template, k)
		}
		s = re.ReplaceAllString(s, "${1} "+strconv.Quote(v)+"${2}")
	}
	s = strings.TrimRight(s, "\n") + "\n"
	keys := func(m map[string]string) []string {
		var out []string
		for k := range m {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}
	for _, k := range keys(set) {
		s += "  " + k + ": " + strconv.Quote(set[k]) + "\n"
	}
	crypter := pconfig.NewSymmetricCrypter(e.dataKey)
	for _, k := range keys(secret) {
		c, err := crypter.EncryptValue(context.Background(), secret[k])
		must(t, err)
		s += "  " + k + ":\n    secure: " + c + "\n"
	}
	if withKey {
		s += "encryptedkey: " + e.encKey + "\n"
	}
	must(t, os.WriteFile(filepath.Join(e.project, "Pulumi."+stack+".yaml"), []byte(s), 0o644))
}

// projectFiles snapshots the project's Pulumi files.
func (e *engineRun) projectFiles() map[string]string {
	m := map[string]string{}
	files, _ := filepath.Glob(filepath.Join(e.project, "Pulumi*.yaml"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		must(e.t, err)
		m[filepath.Base(f)] = string(b)
	}
	return m
}

// deploy runs `agentkeys deploy ACTION --json ARGS...` and returns the exit
// code and outcomes; the engine's progress goes to the run's log.
func (e *engineRun) deploy(action string, args ...string) (int, []outcome, string) {
	t := e.t
	t.Helper()
	cmd := exec.Command(e.agentkeys, append([]string{"deploy", action, "--json", "--project-dir", e.project}, args...)...)
	cmd.Env = append(os.Environ(), "PULUMI_BACKEND_URL=file://"+e.backend, "AGENTKEYS_PULUMI="+e.tools.CLI,
		"PULUMI_HOME="+e.tools.PulumiHome, program.AgentBinaryEnv+"="+e.agent, "PULUMI_SKIP_UPDATE_CHECK=true")
	var stdout, stderr bytes.Buffer
	logf, err := os.OpenFile(e.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	must(t, err)
	defer logf.Close()
	fmt.Fprintf(logf, "\n=== agentkeys deploy %s %s\n", action, strings.Join(args, " "))
	cmd.Stdout = &stdout
	cmd.Stderr = io.MultiWriter(&stderr, logf)
	err = cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("agentkeys deploy %s: %v", action, err)
	}
	var outs []outcome
	if err := json.Unmarshal(stdout.Bytes(), &outs); err != nil {
		t.Fatalf("agentkeys deploy %s %v: exit %d, output is not JSON: %v\nstdout: %s\nstderr: %s", action, args, code, err, stdout.String(), tail(stderr.String(), 6000))
	}
	return code, outs, stderr.String()
}

// mustDeploy is deploy that requires every stack ok.
func (e *engineRun) mustDeploy(action string, args ...string) []outcome {
	e.t.Helper()
	code, outs, stderr := e.deploy(action, args...)
	for _, o := range outs {
		if o.Status != "ok" {
			e.t.Fatalf("deploy %s %s: %s: %s\n%s", action, o.Stack, o.Status, o.Reason, tail(stderr, 4000))
		}
	}
	if code != 0 {
		e.t.Fatalf("deploy %s %v: exit %d\n%s", action, args, code, tail(stderr, 4000))
	}
	return outs
}

func (e *engineRun) figure(name string, v any) {
	e.figures = append(e.figures, fmt.Sprintf("%s: %v", name, v))
	e.t.Logf("%s: %v", name, v)
}

// writeFigures appends the figures to AGENTKEYS_ENGINE_FIGURES (make test-engine prints it).
func (e *engineRun) writeFigures() {
	if p := os.Getenv("AGENTKEYS_ENGINE_FIGURES"); p != "" {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		must(e.t, err)
		defer f.Close()
		for _, l := range e.figures {
			fmt.Fprintln(f, l)
		}
	}
}

// forward makes a host reachable from this (the root) network namespace at
// addr:22, as the EIP is on a real broker: connections are relayed to sshd
// inside the host's own namespace.
func forward(t *testing.T, h *host, addr string) {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "22"))
	if err != nil {
		t.Fatalf("forwarder on %s:22: %v", addr, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var up net.Conn
				if err := hostagente2e.InNetns(h.NetNS, func() error {
					var err error
					up, err = net.DialTimeout("tcp", net.JoinHostPort(hostAddr, "22"), 5*time.Second)
					return err
				}); err != nil {
					return
				}
				defer up.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
				<-done
			}()
		}
	}()
}

// freeLoopback returns a 127/8 address where nothing listens on port 22
// (moto's EIPs are 127.x.y.z too; nothing else routes there).
func freeLoopback(t *testing.T, used map[string]bool) string {
	t.Helper()
	for i := 0; i < 100; i++ {
		var b [3]byte
		_, _ = rand.Read(b[:])
		a := fmt.Sprintf("127.%d.%d.%d", 1+int(b[0])%250, b[1], 1+int(b[2])%250)
		if used[a] {
			continue
		}
		if l, err := net.Listen("tcp", net.JoinHostPort(a, "22")); err == nil {
			l.Close()
			used[a] = true
			return a
		}
	}
	t.Fatal("no free 127/8 address for an EIP")
	return ""
}

// instance launches an EC2 instance in moto with IMDSv2 required (the
// operator's EC2) and returns its id.
func (e *engineRun) instance() string {
	e.t.Helper()
	ctx := context.Background()
	out, err := e.aws.ec2.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String("ami-12c6146b"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		MetadataOptions: &ec2types.InstanceMetadataOptionsRequest{HttpTokens: ec2types.HttpTokensStateRequired}})
	must(e.t, err)
	return aws.ToString(out.Instances[0].InstanceId)
}

// hostStack prepares a host for stack: sshd (+ forwarder at its planned EIP),
// the stand-in AgentKeys repository with the services the program will
// declare, and the stack file pointing the program at it.
func (e *engineRun) hostStack(stack, zoneID, eip string) *fixture {
	t := e.t
	t.Helper()
	f := newFixture(t)
	forward(t, f.h, eip)
	set := map[string]string{"agentkeys:sshUser": f.h.User, "agentkeys:sshHostKey": f.h.HostKey,
		"agentkeys:agentkeysRepo": "file://" + f.bare, "agentkeys:dnsResolver": "127.0.0.1:53"}
	inst := e.instance()
	e.stackFile(stack, "Pulumi.test-2.yaml", map[string]string{"agentkeys:instanceId": inst, "agentkeys:parentZoneId": zoneID},
		set, map[string]string{"agentkeys:sshPrivateKey": f.h.UserKey}, true)
	// The services the program declares for this stack decide the stand-in
	// workspace the host agent builds.
	vals := f.config(t, "test-2") // the template the stack file copies
	vals["agentkeys:instanceId"] = inst
	vals["agentkeys:parentZoneId"] = zoneID
	pushWorkspace(t, f.bare, declaredSpec(t, bringUpSteps(t, declare(t, stack, vals, ""))))
	return f
}

// claims are the physical names the offline plan of stack declares, by kind.
func (e *engineRun) claims(stack string) []isolation.Claim {
	e.t.Helper()
	p, err := offline.Stack(e.project, stack)
	must(e.t, err)
	return isolation.Claims(p)
}

// live is every physical name of the claim kinds moto holds.
func (e *engineRun) live() map[string]bool {
	t := e.t
	t.Helper()
	ctx := context.Background()
	m := map[string]bool{}
	add := func(kind, name string) { m[kind+":"+name] = true }
	bs, err := e.aws.s3.ListBuckets(ctx, &s3.ListBucketsInput{})
	must(t, err)
	for _, b := range bs.Buckets {
		add("bucket", aws.ToString(b.Name))
	}
	roles, err := e.aws.iam.ListRoles(ctx, &iam.ListRolesInput{MaxItems: aws.Int32(1000)})
	must(t, err)
	for _, r := range roles.Roles {
		add("role", aws.ToString(r.RoleName))
	}
	users, err := e.aws.iam.ListUsers(ctx, &iam.ListUsersInput{})
	must(t, err)
	for _, u := range users.Users {
		add("user", aws.ToString(u.UserName))
	}
	ips, err := e.aws.iam.ListInstanceProfiles(ctx, &iam.ListInstanceProfilesInput{})
	must(t, err)
	for _, p := range ips.InstanceProfiles {
		add("instance-profile", aws.ToString(p.InstanceProfileName))
	}
	oidc, err := e.aws.iam.ListOpenIDConnectProviders(ctx, &iam.ListOpenIDConnectProvidersInput{})
	must(t, err)
	for _, p := range oidc.OpenIDConnectProviderList {
		arn := aws.ToString(p.Arn)
		add("oidc-provider", "https://"+arn[strings.Index(arn, "oidc-provider/")+len("oidc-provider/"):])
	}
	sets, err := e.aws.ses.ListReceiptRuleSets(ctx, &ses.ListReceiptRuleSetsInput{})
	must(t, err)
	for _, s := range sets.RuleSets {
		add("ses-rule-set", aws.ToString(s.Name))
		rs, err := e.aws.ses.DescribeReceiptRuleSet(ctx, &ses.DescribeReceiptRuleSetInput{RuleSetName: s.Name})
		must(t, err)
		for _, r := range rs.Rules {
			add("receipt-rule", aws.ToString(r.Name))
		}
	}
	// moto serves SES v2's identities through the v1 listing.
	ids, err := e.aws.ses.ListIdentities(ctx, &ses.ListIdentitiesInput{})
	must(t, err)
	for _, i := range ids.Identities {
		add("ses-identity", i)
	}
	zones, err := e.aws.r53.ListHostedZones(ctx, &route53.ListHostedZonesInput{})
	must(t, err)
	for _, z := range zones.HostedZones {
		rrs, err := e.aws.r53.ListResourceRecordSets(ctx, &route53.ListResourceRecordSetsInput{HostedZoneId: z.Id})
		must(t, err)
		for _, r := range rrs.ResourceRecordSets {
			add("dns-record", string(r.Type)+" "+strings.TrimSuffix(aws.ToString(r.Name), "."))
		}
	}
	addrs, err := e.aws.ec2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{})
	must(t, err)
	for _, a := range addrs.Addresses {
		for _, tg := range a.Tags {
			if aws.ToString(tg.Key) == "Name" {
				add("eip-tag", aws.ToString(tg.Value))
			}
		}
	}
	return m
}

// present splits a stack's claims into those moto holds and those it lacks.
func present(claims []isolation.Claim, live map[string]bool) (have, lack []string) {
	for _, c := range claims {
		k := c.Kind + ":" + c.Name
		if live[k] {
			have = append(have, k)
		} else {
			lack = append(lack, k)
		}
	}
	return have, lack
}

func (e *engineRun) zone() string {
	e.t.Helper()
	hz, err := e.aws.r53.CreateHostedZone(context.Background(), &route53.CreateHostedZoneInput{Name: aws.String("example.org"), CallerReference: aws.String("engine-e2e")})
	must(e.t, err)
	return strings.TrimPrefix(aws.ToString(hz.HostedZone.Id), "/hostedzone/")
}

// stepsOf lists result steps as "op type name".
func stepsOf(r *engineResult, skipSame bool) []string {
	var out []string
	if r == nil {
		return nil
	}
	for _, s := range r.Steps {
		if skipSame && (s.Op == "same" || s.Op == "read") {
			continue
		}
		out = append(out, s.Op+" "+s.Type+" "+s.URN[strings.LastIndex(s.URN, "::")+2:])
	}
	return out
}
