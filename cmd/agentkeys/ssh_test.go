package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/agentkeys/agentkeys-infra/internal/testkit/mototest"
	"github.com/agentkeys/agentkeys-infra/ops/sshx"
	"github.com/agentkeys/agentkeys-infra/ops/testkit/sshdtest"
)

// push is one SendSSHPublicKey call seen on the wire.
type push struct {
	AccessKey                                string
	InstanceId, InstanceOSUser, SSHPublicKey string
}

// eicProxy forwards every AWS call to moto (which accepts SendSSHPublicKey but
// delivers nothing) and, like the real service, makes a pushed key usable:
// it appends it to the test sshd's authorized_keys.
func eicProxy(t *testing.T, motoURL string, sshd *sshdtest.Server) (string, func() []push) {
	u, _ := url.Parse(motoURL)
	rp := httputil.NewSingleHostReverseProxy(u)
	var mu sync.Mutex
	var pushes []push
	akid := regexp.MustCompile(`Credential=([A-Z0-9a-z]+)/`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".SendSSHPublicKey") {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			var p push
			_ = json.Unmarshal(body, &p)
			if m := akid.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
				p.AccessKey = m[1]
			}
			mu.Lock()
			pushes = append(pushes, p)
			mu.Unlock()
			sshd.Authorize(t, p.SSHPublicKey)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []push { mu.Lock(); defer mu.Unlock(); return append([]push(nil), pushes...) }
}

func TestSSHThroughInstanceConnectAndFallback(t *testing.T) {
	sshBin := mototest.Require(t, "ssh", "apt-get install -y openssh-client")
	sshd := sshdtest.Start(t)
	motoURL := mototest.Start(t)
	ctx := context.Background()

	// The broker: an instance with the stack's tagged EIP attached.
	ec := ec2.NewFromConfig(mototest.Config(t))
	run, err := ec.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String("ami-12c6146b"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(run.Instances[0].InstanceId)
	dir := projectWith(t, "test-2", id)
	n := names(t, dir, "test-2")
	alloc, err := ec.AllocateAddress(ctx, &ec2.AllocateAddressInput{TagSpecifications: []ec2types.TagSpecification{{
		ResourceType: ec2types.ResourceTypeElasticIp, Tags: []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String(n.EIPTag)}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ec.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: alloc.AllocationId, InstanceId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	b, err := sshx.FindBroker(ctx, ec, n, "", "")
	if err != nil || b.InstanceID != id || b.PublicIP != aws.ToString(alloc.PublicIp) {
		t.Fatalf("FindBroker = %+v, %v; want %s at %s", b, err, id, aws.ToString(alloc.PublicIp))
	}

	proxy, pushes := eicProxy(t, motoURL, sshd)
	t.Setenv("AWS_ENDPOINT_URL", proxy)
	// The stack's SSH user has its own profile; the operator's creds stay in the env.
	creds := filepath.Join(t.TempDir(), "credentials")
	if err := os.WriteFile(creds, []byte("[agentkeys-broker-test-2]\naws_access_key_id = AKIASSHUSERTEST2\naws_secret_access_key = x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", creds)

	me, _ := user.Current()
	base := []string{"ssh", "test-2", "--project-dir", dir, "--host", "127.0.0.1", "--port", strconv.Itoa(sshd.Port), "--user", me.Username}
	for _, o := range sshd.ClientOptions() {
		base = append(base, "-o", o)
	}
	d := deps{sshBin: sshBin}

	code, out, errs := runCLI(t, d, append(base, "--", "echo", "ok-from-broker")...)
	if code != 0 || strings.TrimSpace(out) != "ok-from-broker" {
		t.Fatalf("instance connect: exit %d, out %q, err %q", code, out, errs)
	}
	p := pushes()
	if len(p) != 1 || p[0].InstanceId != id || p[0].InstanceOSUser != me.Username || p[0].AccessKey != "AKIASSHUSERTEST2" || !strings.HasPrefix(p[0].SSHPublicKey, "ssh-ed25519 ") {
		t.Fatalf("pushes %+v", p)
	}
	// One-time: the next session pushes a different key; --stack names the stack too.
	flagged := append([]string{"ssh", "--stack", "test-2"}, base[2:]...)
	if code, _, errs := runCLI(t, d, append(flagged, "--", "true")...); code != 0 {
		t.Fatalf("second session: %d %s", code, errs)
	}
	if p := pushes(); len(p) != 2 || p[1].SSHPublicKey == p[0].SSHPublicKey {
		t.Fatalf("key reused across sessions: %+v", p)
	}
	// The remote command's exit status comes back.
	if code, _, _ := runCLI(t, d, append(base, "--", "exit", "7")...); code != 7 {
		t.Fatalf("remote exit status: %d, want 7", code)
	}

	// Fallback: the operator's key, no push.
	keyDir := t.TempDir()
	pem, pub, err := sshx.OneTimeKey(keyDir)
	if err != nil {
		t.Fatal(err)
	}
	sshd.Authorize(t, pub)
	before := len(pushes())
	code, out, errs = runCLI(t, d, append(base, "--fallback", "--key", pem, "--", "echo", "fallback-ok")...)
	if code != 0 || strings.TrimSpace(out) != "fallback-ok" || len(pushes()) != before {
		t.Fatalf("fallback: exit %d out %q err %q pushes %d->%d", code, out, errs, before, len(pushes()))
	}
	if code, _, errs := runCLI(t, d, "ssh", "test-2", "--project-dir", dir, "--fallback"); code != exitUsage || !strings.Contains(errs, "--key") {
		t.Fatalf("fallback without key: %d %s", code, errs)
	}

	// Without the profile the push fails with a pointer, before ssh runs.
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	if code, _, errs := runCLI(t, d, append(base, "--", "true")...); code != exitFail || !strings.Contains(errs, "agentkeys-broker-test-2") {
		t.Fatalf("missing profile: %d %s", code, errs)
	}
}
