package program

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/infra/config"
	"github.com/agentkeys/agentkeys-infra/infra/plan"
	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/policy"
)

const testKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"

// summary is what the host agent prints with --json after a converge, built
// from the agent's own types so the two cannot drift apart.
func summary(issuer string, brokerIssued bool) string {
	host := strings.TrimPrefix(issuer, "https://")
	s := agent.Summary{Stack: "x", Issuer: issuer, Health: map[string]agent.HealthCheck{}}
	if brokerIssued {
		s.Hosts = agent.HostsSummary{Issued: []string{host}, Skipped: map[string]string{}}
		s.Health[agent.HealthBrokerTLS] = agent.HealthCheck{URL: issuer + "/.well-known/openid-configuration", OK: true}
	} else {
		s.Hosts = agent.HostsSummary{Issued: []string{}, Skipped: map[string]string{host: "A record resolves to 198.51.100.7, not 203.0.113.10"}}
	}
	b, _ := json.Marshal(s)
	return string(b)
}

// chain returns a served chain (root first, as pulumi-tls returns it) and
// the SHA-1 of its intermediate.
func chain(t *testing.T) ([]any, string) {
	mk := func(cn string, ca bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: ca, BasicConstraintsValid: true}
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		require.NoError(t, err)
		c, _ := x509.ParseCertificate(der)
		return c, key, der
	}
	root, rootKey, rootDER := mk("root", true, nil, nil)
	inter, interKey, interDER := mk("intermediate", true, root, rootKey)
	_, _, leafDER := mk("broker", false, inter, interKey)
	var certs []any
	for _, der := range [][]byte{rootDER, interDER, leafDER} {
		certs = append(certs, map[string]any{"certPem": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))})
	}
	sum := sha1.Sum(interDER)
	return certs, hex.EncodeToString(sum[:])
}

// deploy plays one `pulumi up` of stack against a cloud whose broker host
// reports brokerTLS, and returns what the program declared.
func deploy(t *testing.T, stack string, brokerTLS bool, edit func(map[string]string)) (*plan.Plan, string) {
	t.Helper()
	return deployWith(t, stack, brokerTLS, nil, edit)
}

// deployWith is deploy in an account that already has the stack's OIDC
// provider with these thumbprints (nil: no provider).
func deployWith(t *testing.T, stack string, brokerTLS bool, existing []any, edit func(map[string]string)) (*plan.Plan, string) {
	t.Helper()
	raw, err := config.ReadStackFile("../..", stack)
	require.NoError(t, err)
	vals := map[string]string{}
	for k, v := range raw.Values {
		vals[k] = v
	}
	vals["agentkeys:sshPrivateKey"] = testKey
	if edit != nil {
		edit(vals)
	}
	cfg, err := config.Parse(stack, vals)
	require.NoError(t, err)
	certs, thumb := chain(t)
	t.Setenv(AgentBinaryEnv, "/bin/true") // any file: its hash is the trigger
	p, err := plan.Run(stack, Declare, plan.Options{
		Config: vals, SecretKeys: []string{"agentkeys:sshPrivateKey"},
		Answers: map[string]plan.Answer{
			"aws:ec2/getEips:getEips": func(resource.PropertyMap) (resource.PropertyMap, error) {
				return resource.NewPropertyMapFromMap(map[string]any{"allocationIds": []any{}, "publicIps": []any{}}), nil
			},
			"aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider": func(args resource.PropertyMap) (resource.PropertyMap, error) {
				arn := args["arn"].StringValue()
				assert.Equal(t, cfg.Names().OIDCProviderARN, arn)
				if existing == nil {
					return nil, fmt.Errorf("reading IAM OIDC Provider (%s): NoSuchEntity: not found", arn)
				}
				return resource.NewPropertyMapFromMap(map[string]any{"arn": arn, "url": cfg.Names().Issuer, "thumbprintLists": existing, "clientIdLists": []any{"sts.amazonaws.com"}}), nil
			},
			"tls:index/getCertificate:getCertificate": func(args resource.PropertyMap) (resource.PropertyMap, error) {
				assert.Equal(t, cfg.Names().Issuer, args["url"].StringValue(), "the live TLS call reads the broker's own chain")
				return resource.NewPropertyMapFromMap(map[string]any{"certificates": certs}), nil
			},
		},
		State: func(typ, name string, in resource.PropertyMap) resource.PropertyMap {
			switch typ {
			case "aws:ec2/eip:Eip":
				return resource.NewPropertyMapFromMap(map[string]any{"publicIp": "203.0.113.10", "allocationId": "eipalloc-0123456789abcdef0"})
			case "command:remote:Command":
				return resource.NewPropertyMapFromMap(map[string]any{"stdout": summary(cfg.Names().Issuer, brokerTLS), "stderr": ""})
			case "aws:iam/role:Role":
				return resource.NewPropertyMapFromMap(map[string]any{"arn": "arn:aws:iam::123456789012:role/" + in["name"].StringValue()})
			case "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
				return resource.NewPropertyMapFromMap(map[string]any{"arn": cfg.Names().OIDCProviderARN})
			case "aws:iam/accessKey:AccessKey":
				return resource.NewPropertyMapFromMap(map[string]any{"secret": "wJalrXUtnFEMI-" + name})
			case "aws:sesv2/emailIdentity:EmailIdentity":
				return resource.NewPropertyMapFromMap(map[string]any{"dkimSigningAttributes": map[string]any{"tokens": []any{"t0", "t1", "t2"}}})
			}
			return nil
		},
	})
	require.NoError(t, err)
	return p, thumb
}

func one(t *testing.T, p *plan.Plan, typ, name string) *plan.Resource {
	t.Helper()
	rs := p.Find(typ, name)
	require.Len(t, rs, 1, "%s %s", typ, name)
	return rs[0]
}

func TestUpFollowsTheBringUpOrder(t *testing.T) {
	for _, stack := range []string{"prod", "test", "test-2", "base"} {
		t.Run(stack, func(t *testing.T) {
			p, thumb := deploy(t, stack, true, nil)
			eip := one(t, p, "aws:ec2/eip:Eip", "")
			records := p.Find("aws:route53/record:Record", "")
			var aRecords []*plan.Resource
			for _, r := range records {
				if r.Inputs["type"] == "A" {
					aRecords = append(aRecords, r)
				}
			}
			require.Len(t, aRecords, 9)
			apply := one(t, p, "command:remote:Command", "-apply")
			provider := one(t, p, "aws:iam/openIdConnectProvider:OpenIdConnectProvider", "")
			for _, r := range aRecords {
				assert.True(t, p.DependsOn(r.URN, eip.URN), "record %s after the EIP", r.Name)
				assert.Equal(t, []any{"203.0.113.10"}, r.Inputs["records"], "every A record is the one EIP")
				assert.True(t, p.DependsOn(apply.URN, r.URN), "host bring-up after record %s", r.Name)
			}
			assert.True(t, p.DependsOn(apply.URN, one(t, p, "aws:iam/instanceProfile:InstanceProfile", "").URN))
			rule := one(t, p, "aws:ses/receiptRule:ReceiptRule", "")
			assert.True(t, p.DependsOn(rule.URN, one(t, p, "aws:s3/bucketPolicy:BucketPolicy", "mail-bucket-policy").URN), "rule after its bucket policy")
			assert.True(t, p.DependsOn(provider.URN, apply.URN), "OIDC provider after the host reports TLS")
			roles := p.Find("aws:iam/role:Role", "")
			federated := 0
			for _, r := range roles {
				doc := r.Inputs["assumeRolePolicy"].(string)
				if !strings.Contains(doc, "oidc-provider") {
					continue
				}
				federated++
				assert.True(t, p.DependsOn(r.URN, provider.URN), "federated trust of %s after the provider", r.Name)
				assert.JSONEq(t, policy.FederatedTrust(names(t, stack)).JSON(), doc)
			}
			assert.Equal(t, 4, federated, "the data role and the three class roles are federated")
			thumbs, ok := provider.Inputs["thumbprintLists"].([]any)
			require.True(t, ok, "thumbprint set from the live chain")
			assert.Equal(t, []any{thumb}, thumbs, "the top intermediate's SHA-1")
			assert.Equal(t, []any{"sts.amazonaws.com"}, provider.Inputs["clientIdLists"])
			assert.True(t, strings.HasPrefix(fmtOut(p, "federation"), "active:"), fmtOut(p, "federation"))
		})
	}
}

func names(t *testing.T, stack string) naming.Names {
	c, err := config.LoadFile("../..", stack)
	require.NoError(t, err)
	return c.Names()
}

func fmtOut(p *plan.Plan, k string) string {
	o, ok := p.Outputs[k]
	if !ok {
		return "<missing>"
	}
	if s, ok := o.Value.(string); ok {
		return s
	}
	b, _ := json.Marshal(o.Value)
	return string(b)
}

func TestFederationPendingUntilBrokerServesTLS(t *testing.T) {
	p, _ := deploy(t, "test-2", false, nil)
	n := names(t, "test-2")
	for _, r := range p.Find("aws:iam/role:Role", "") {
		doc := r.Inputs["assumeRolePolicy"].(string)
		if strings.Contains(r.Name, "host-role") {
			continue
		}
		assert.JSONEq(t, policy.StaticTrust(n).JSON(), doc, "%s keeps the static trust", r.Name)
	}
	assert.Empty(t, p.Find("aws:iam/openIdConnectProvider:OpenIdConnectProvider", ""), "no provider before the broker serves TLS: IAM would fetch a certificate nobody serves")
	assert.NotContains(t, p.Invokes, "tls:index/getCertificate:getCertificate", "no live TLS call while the broker has no certificate")
	inline := one(t, p, "aws:iam/rolePolicy:RolePolicy", "data-role-policy")
	assert.Equal(t, n.DataRole+"-inline", inline.Inputs["name"], "the static phase keeps the spec's inline grant")
	fed := fmtOut(p, "federation")
	assert.True(t, strings.HasPrefix(fed, "pending:"), fed)
	assert.Contains(t, fed, "A record resolves to 198.51.100.7", "the reason is the agent's")
	assert.Contains(t, fmtOut(p, "hostnames"), `"broker-test-2.example.org":"http-only: A record resolves to 198.51.100.7`)
}

// Once the account has the provider, the stack stays federated whatever one
// bring-up reports: a failed TLS check never puts the static trust back.
func TestFederationIsSticky(t *testing.T) {
	n := names(t, "test-2")
	kept := "0123456789abcdef0123456789abcdef01234567"
	p, _ := deployWith(t, "test-2", false, []any{kept}, nil)
	provider := one(t, p, "aws:iam/openIdConnectProvider:OpenIdConnectProvider", "")
	assert.Equal(t, []any{kept}, provider.Inputs["thumbprintLists"], "the account's thumbprint is kept, never cleared")
	for _, r := range p.Find("aws:iam/role:Role", "") {
		if strings.Contains(r.Name, "host-role") {
			continue
		}
		assert.JSONEq(t, policy.FederatedTrust(n).JSON(), r.Inputs["assumeRolePolicy"].(string), "%s stays federated", r.Name)
	}
	assert.Empty(t, p.Find("aws:iam/rolePolicy:RolePolicy", "data-role-policy"), "no broad inline grant after federation")
	fed := fmtOut(p, "federation")
	assert.True(t, strings.HasPrefix(fed, "active: roles trust only "+n.OIDCProviderARN+" (this run's bring-up: pending: "), fed)

	// Serving again: the live thumbprint replaces the kept one.
	p, thumb := deployWith(t, "test-2", true, []any{kept}, nil)
	assert.Equal(t, []any{thumb}, one(t, p, "aws:iam/openIdConnectProvider:OpenIdConnectProvider", "").Inputs["thumbprintLists"])
	assert.Equal(t, "active: roles trust only "+n.OIDCProviderARN, fmtOut(p, "federation"))
}

func TestOutputsAnOperatorNeeds(t *testing.T) {
	p, _ := deploy(t, "test-2", true, nil)
	for _, k := range []string{"brokerUrl", "issuer", "eip", "hostnames", "dataRoleArn", "classRoleArns", "hostRoleArn",
		"mailBucket", "dataBuckets", "oidcProviderArn", "daemonAccessKeyId", "daemonSecretKey", "sshAccessKeyId", "sshSecretKey",
		"credentials", "hostBringUp", "federation", "instanceProfile", "sender"} {
		assert.Contains(t, p.Outputs, k)
	}
	assert.Equal(t, "https://broker-test-2.example.org", fmtOut(p, "brokerUrl"))
	assert.Equal(t, "203.0.113.10", fmtOut(p, "eip"))
	assert.Equal(t, "arn:aws:iam::123456789012:oidc-provider/broker-test-2.example.org", fmtOut(p, "oidcProviderArn"))
	assert.Contains(t, fmtOut(p, "hostnames"), `"mcp-test-2.example.org":"dns-only"`)
	for _, k := range []string{"daemonSecretKey", "sshSecretKey", "credentials"} {
		assert.True(t, p.Outputs[k].Secret, "%s is a secret output", k)
	}
	var buf strings.Builder
	require.NoError(t, p.JSON(&buf))
	for _, leak := range []string{"wJalrXUtnFEMI", "OPENSSH PRIVATE KEY", "b3BlbnNzaC1rZXkt"} {
		assert.NotContains(t, buf.String(), leak, "secrets never reach the plan output")
	}
}

func TestHostBringUpDeclaresExactRemoteCommands(t *testing.T) {
	p, _ := deploy(t, "test-2", true, func(v map[string]string) { v["agentkeys:sshUser"] = "admin" })
	apply := one(t, p, "command:remote:Command", "-apply")
	script := apply.Inputs["create"].(string)
	assert.Contains(t, script, "sudo -n /usr/local/bin/agentkeys-hostagent apply --spec /etc/agentkeys/hostspec.json --json")
	assert.Contains(t, script, "/home/admin/.agentkeys-deploy/test-2/agentkeys-hostagent")
	assert.Equal(t, plan.Secret, apply.Inputs["connection"], "the connection (with its key) is secret")
	triggers := apply.Inputs["triggers"].([]any)
	require.Len(t, triggers, 4, "agent hash, spec, redeploy, instance id")
	assert.Equal(t, "i-00000000000000003", triggers[3], "a replaced EC2 behind the same EIP is converged")
	// The spec reaches the host on the stage command's stdin: pulumi-command
	// v1.2.1 copies path-based assets only, and creates no parent directory.
	stage := one(t, p, "command:remote:Command", "-stage")
	assert.Contains(t, stage.Inputs["create"], "mkdir -p /home/admin/.agentkeys-deploy/test-2\n")
	assert.Equal(t, triggers[1], stage.Inputs["stdin"], "the staged spec is the triggering spec")
	assert.Equal(t, triggers, stage.Inputs["triggers"])
	agentCopy := one(t, p, "command:remote:CopyToRemote", "-agent")
	assert.Equal(t, "/home/admin/.agentkeys-deploy/test-2/agentkeys-hostagent", agentCopy.Inputs["remotePath"])
	assert.Equal(t, triggers, agentCopy.Inputs["triggers"], "a redeploy restages the agent too")
	assert.Len(t, p.Find("command:remote:CopyToRemote", ""), 1, "no text-asset copy")
	assert.True(t, p.DependsOn(agentCopy.URN, stage.URN) && p.DependsOn(apply.URN, agentCopy.URN), "stage, copy, apply")

	// The same config gives the same triggers: no re-run without a change.
	again, _ := deploy(t, "test-2", true, func(v map[string]string) { v["agentkeys:sshUser"] = "admin" })
	assert.Equal(t, triggers, one(t, again, "command:remote:Command", "-apply").Inputs["triggers"])
	// A redeploy trigger or a spec change re-runs it.
	bumped, _ := deploy(t, "test-2", true, func(v map[string]string) {
		v["agentkeys:sshUser"] = "admin"
		v["agentkeys:redeploy"] = "2026-11-28"
	})
	assert.NotEqual(t, triggers, one(t, bumped, "command:remote:Command", "-apply").Inputs["triggers"])
	ref, _ := deploy(t, "test-2", true, func(v map[string]string) {
		v["agentkeys:sshUser"] = "admin"
		v["agentkeys:agentkeysRef"] = "v1.2.3"
	})
	assert.NotEqual(t, triggers, one(t, ref, "command:remote:Command", "-apply").Inputs["triggers"])
}

func TestNoPrincipalGetsS3FullAccess(t *testing.T) {
	for _, stack := range []string{"prod", "test-2"} {
		p, _ := deploy(t, stack, true, nil)
		var buf strings.Builder
		require.NoError(t, p.JSON(&buf))
		assert.NotContains(t, buf.String(), "AmazonS3FullAccess")
		assert.NotContains(t, buf.String(), `\"s3:*\",\"Resource\":\"*\"`)
		for _, a := range p.Find("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "") {
			assert.Equal(t, policy.SSMCorePolicyARN, a.Inputs["policyArn"])
		}
	}
}

func TestProdPostureProtectsData(t *testing.T) {
	for stack, protected := range map[string]bool{"prod": true, "base": true, "test": false, "test-2": false} {
		p, _ := deploy(t, stack, true, nil)
		for _, b := range p.Find("aws:s3/bucketV2:BucketV2", "") {
			assert.Equal(t, protected, b.Protect, "%s %s protect", stack, b.Name)
			assert.Equal(t, !protected, b.Inputs["forceDestroy"] == true, "%s %s forceDestroy", stack, b.Name)
		}
	}
}

func TestTestStacksLiveUnderTheCIBoundary(t *testing.T) {
	for stack, bounded := range map[string]bool{"prod": false, "base": false, "test": true, "test-2": true} {
		p, _ := deploy(t, stack, true, nil)
		for _, typ := range []string{"aws:iam/role:Role", "aws:iam/user:User"} {
			for _, r := range p.Find(typ, "") {
				if bounded {
					assert.Equal(t, policy.TestBoundaryARN("123456789012"), r.Inputs["permissionsBoundary"], "%s %s", stack, r.Name)
				} else {
					assert.Nil(t, r.Inputs["permissionsBoundary"], "%s %s", stack, r.Name)
				}
			}
		}
	}
}

// A preview cannot know the bring-up's output when it re-runs (its triggers
// changed), so federation decisions that change resources are taken from
// what the account holds, not from that output: the preview then shows
// exactly the resources the up keeps, and no spurious delete for the gate.
func TestPreviewWithAnUnknownBringUpDeletesNothing(t *testing.T) {
	for _, existing := range []bool{false, true} {
		raw, err := config.ReadStackFile("../..", "prod")
		require.NoError(t, err)
		vals := map[string]string{"agentkeys:sshPrivateKey": testKey}
		for k, v := range raw.Values {
			vals[k] = v
		}
		n := names(t, "prod")
		t.Setenv(AgentBinaryEnv, "/bin/true")
		p, err := plan.Run("prod", Declare, plan.Options{
			Config: vals, SecretKeys: []string{"agentkeys:sshPrivateKey"}, Preview: true,
			Answers: map[string]plan.Answer{
				"aws:ec2/getEips:getEips": func(resource.PropertyMap) (resource.PropertyMap, error) {
					return resource.NewPropertyMapFromMap(map[string]any{"allocationIds": []any{}, "publicIps": []any{}}), nil
				},
				"aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider": func(args resource.PropertyMap) (resource.PropertyMap, error) {
					if !existing {
						return nil, fmt.Errorf("NoSuchEntity")
					}
					return resource.NewPropertyMapFromMap(map[string]any{"arn": n.OIDCProviderARN, "url": n.Issuer, "thumbprintLists": []any{"0123456789abcdef0123456789abcdef01234567"}}), nil
				},
			},
		})
		require.NoError(t, err)
		assert.Equal(t, !existing, len(p.Find("aws:iam/rolePolicy:RolePolicy", "data-role-policy")) == 1, "existing %v: the inline grant follows the account, not the unknown output", existing)
		if existing {
			prov := one(t, p, "aws:iam/openIdConnectProvider:OpenIdConnectProvider", "")
			assert.Equal(t, n.OIDCProviderARN, prov.ImportID, "a provider the state may lack is adopted")
			for _, r := range p.Find("aws:iam/role:Role", "") {
				if !strings.Contains(r.Name, "host-role") {
					assert.JSONEq(t, policy.FederatedTrust(n).JSON(), r.Inputs["assumeRolePolicy"].(string), "%s stays federated in the preview", r.Name)
				}
			}
		}
	}
}

// A custom RPC URL may carry an API key in its path: the whole host spec is
// then a secret in the stage command's stdin and in the triggers.
func TestCustomRPCURLMakesTheHostSpecSecret(t *testing.T) {
	p, _ := deploy(t, "test-2", true, func(v map[string]string) { v["agentkeys:rpcUrl"] = "https://mainnet.example.org/v3/rpc-key-7f3a9c" })
	stage := one(t, p, "command:remote:Command", "-stage")
	assert.Equal(t, plan.Secret, stage.Inputs["stdin"])
	var buf strings.Builder
	require.NoError(t, p.JSON(&buf))
	if i := strings.Index(buf.String(), "rpc-key-7f3a9c"); i >= 0 {
		t.Errorf("the RPC key reaches the plan output: …%s…", buf.String()[max(0, i-300):i+20])
	}
	// Without one, the spec stays readable in previews.
	p, _ = deploy(t, "test-2", true, nil)
	assert.NotEqual(t, plan.Secret, one(t, p, "command:remote:Command", "-stage").Inputs["stdin"])
}
