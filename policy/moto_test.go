package policy_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/agentkeys/agentkeys-infra/internal/testkit/mototest"
	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/policy"
)

// startMoto runs moto_server on a free loopback port for the test's lifetime
// and returns its endpoint.
func startMoto(t *testing.T) string {
	t.Helper()
	return mototest.StartPlain(t)
}

func awsClients(t *testing.T, endpoint string) (*iam.Client, *s3.Client) {
	t.Helper()
	cfg, err := config.LoadDefaultConfig(context.Background(),
		config.WithRegion("us-east-1"),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("testing", "testing", "")),
	)
	if err != nil {
		t.Fatal(err)
	}
	ic := iam.NewFromConfig(cfg, func(o *iam.Options) { o.BaseEndpoint = aws.String(endpoint) })
	sc := s3.NewFromConfig(cfg, func(o *s3.Options) { o.BaseEndpoint = aws.String(endpoint); o.UsePathStyle = true })
	return ic, sc
}

// sameJSON compares documents by value; IAM returns them URL-encoded.
func sameJSON(t *testing.T, what, got string, want policy.Document) {
	t.Helper()
	if u, err := url.QueryUnescape(got); err == nil && strings.HasPrefix(strings.TrimSpace(u), "{") {
		got = u
	}
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Errorf("%s: stored document is not JSON: %v", what, err)
		return
	}
	_ = json.Unmarshal([]byte(want.JSON()), &w)
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s: stored %s, submitted %s", what, got, want.JSON())
	}
}

// Every document of every stack kind is submitted the way the program will
// attach it, and must be accepted and stored unchanged.
func TestMotoAcceptsEveryDocument(t *testing.T) {
	ic, sc := awsClients(t, startMoto(t))
	ctx := context.Background()
	total := 0
	for _, stack := range stackNames {
		n := names(t, stack)
		docs := policy.AllDocuments(n, instanceID(stack))
		submitted := map[string]bool{}
		sub := func(key string) policy.Document { submitted[key] = true; return docs[key] }
		must := func(what string, err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("%s %s: moto rejected: %v", stack, what, err)
			}
		}

		// Every identity document also as a managed policy.
		for _, k := range policy.SortedKeys(docs) {
			if policy.UseOf(k) != policy.UseIdentity {
				continue
			}
			_, err := ic.CreatePolicy(ctx, &iam.CreatePolicyInput{
				PolicyName: aws.String(strings.ReplaceAll(stack+"-"+k, ":", "-")), PolicyDocument: aws.String(docs[k].JSON())})
			must("CreatePolicy "+k, err)
		}

		for _, u := range []struct{ user, key string }{{n.DaemonUser, policy.KeyDaemonUser}, {n.SSHUser, policy.KeySSHUser}} {
			_, err := ic.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(u.user)})
			must("CreateUser", err)
			_, err = ic.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String(u.user),
				PolicyName: aws.String(u.user), PolicyDocument: aws.String(sub(u.key).JSON())})
			must("PutUserPolicy "+u.key, err)
			got, err := ic.GetUserPolicy(ctx, &iam.GetUserPolicyInput{UserName: aws.String(u.user), PolicyName: aws.String(u.user)})
			must("GetUserPolicy", err)
			sameJSON(t, stack+" "+u.key, aws.ToString(got.PolicyDocument), docs[u.key])
		}

		// Data and class roles: static trust first, federated after the swap.
		roles := []string{n.DataRole}
		for _, c := range naming.DataClasses {
			roles = append(roles, n.DataClassRoles[c.Name])
		}
		for _, r := range roles {
			_, err := ic.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(r), AssumeRolePolicyDocument: aws.String(sub(policy.KeyStaticTrust).JSON())})
			must("CreateRole static "+r, err)
			// moto's CreateRole stores any text; UpdateAssumeRolePolicy validates.
			_, err = ic.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String(r), PolicyDocument: aws.String(docs[policy.KeyStaticTrust].JSON())})
			must("UpdateAssumeRolePolicy static "+r, err)
			_, err = ic.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String(r), PolicyDocument: aws.String(sub(policy.KeyFederatedTrust).JSON())})
			must("UpdateAssumeRolePolicy federated "+r, err)
			got, err := ic.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(r)})
			must("GetRole", err)
			sameJSON(t, stack+" trust of "+r, aws.ToString(got.Role.AssumeRolePolicyDocument), docs[policy.KeyFederatedTrust])
		}
		// Federated trust also straight at creation (a stack created after federation).
		_, err := ic.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("fed-" + n.DataRole), AssumeRolePolicyDocument: aws.String(docs[policy.KeyFederatedTrust].JSON())})
		must("CreateRole federated", err)
		_, err = ic.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(n.DataRole),
			PolicyName: aws.String(n.DataRole + "-inline"), PolicyDocument: aws.String(sub(policy.KeyDataRoleInline).JSON())})
		must("PutRolePolicy data", err)

		_, err = ic.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(n.HostRole), AssumeRolePolicyDocument: aws.String(sub(policy.KeyHostRoleTrust).JSON())})
		must("CreateRole host", err)
		_, err = ic.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String(n.HostRole), PolicyDocument: aws.String(docs[policy.KeyHostRoleTrust].JSON())})
		must("UpdateAssumeRolePolicy host", err)
		_, err = ic.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(n.HostRole),
			PolicyName: aws.String("BrokerSendEmailAssumeData"), PolicyDocument: aws.String(sub(policy.KeyHostRoleInline).JSON())})
		must("PutRolePolicy host", err)
		got, err := ic.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(n.HostRole), PolicyName: aws.String("BrokerSendEmailAssumeData")})
		must("GetRolePolicy host", err)
		sameJSON(t, stack+" host inline", aws.ToString(got.PolicyDocument), docs[policy.KeyHostRoleInline])

		buckets := map[string]string{policy.KeyMailBucket: n.MailBucket}
		for _, c := range naming.DataClasses {
			buckets[policy.KeyClassBucket+c.Name] = n.DataBuckets[c.Name]
		}
		for key, b := range buckets {
			_, err := sc.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)})
			must("CreateBucket "+b, err)
			_, err = sc.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(b), Policy: aws.String(sub(key).JSON())})
			must("PutBucketPolicy "+key, err)
			got, err := sc.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(b)})
			must("GetBucketPolicy "+key, err)
			sameJSON(t, stack+" "+key, aws.ToString(got.Policy), docs[key])
		}

		for k := range docs {
			if !submitted[k] {
				t.Errorf("%s: document %s was never submitted to moto", stack, k)
			}
		}
		total += len(docs)
	}
	t.Logf("moto accepted %d documents (%d stacks)", total, len(stackNames))
}

// Negative control: moto must reject malformed documents, or the test above
// could not fail.
func TestMotoRejectsMalformedDocuments(t *testing.T) {
	ic, _ := awsClients(t, startMoto(t))
	ctx := context.Background()
	n := names(t, "test-2")
	bad := policy.DaemonUser(n)
	bad.Statement[0].Effect = "Permit"
	noResource := policy.DaemonUser(n)
	noResource.Statement[0].Resource = nil
	for name, doc := range map[string]string{
		"effect Permit": bad.JSON(),
		"no Resource":   noResource.JSON(),
		"not JSON":      policy.DaemonUser(n).JSON()[1:],
	} {
		_, err := ic.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String(strings.ReplaceAll(name, " ", "-")), PolicyDocument: aws.String(doc)})
		var api smithy.APIError
		if !errors.As(err, &api) || api.ErrorCode() != "MalformedPolicyDocument" {
			t.Errorf("%s: want MalformedPolicyDocument, got %v", name, err)
		}
	}
	// Trust documents are validated by UpdateAssumeRolePolicy (CreateRole
	// stores anything); moto's PutBucketPolicy validates nothing, so bucket
	// policies are also checked by iam-policy in TestEvaluatorValidatesEveryDocument.
	if _, err := ic.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("r"), AssumeRolePolicyDocument: aws.String(policy.StaticTrust(n).JSON())}); err != nil {
		t.Fatal(err)
	}
	badTrust := policy.StaticTrust(n)
	badTrust.Statement[0].Effect = "Permit"
	for name, doc := range map[string]string{"trust effect Permit": badTrust.JSON(), "trust not JSON": policy.StaticTrust(n).JSON()[2:]} {
		_, err := ic.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String("r"), PolicyDocument: aws.String(doc)})
		var api smithy.APIError
		if !errors.As(err, &api) || api.ErrorCode() != "MalformedPolicyDocument" {
			t.Errorf("%s: want MalformedPolicyDocument, got %v", name, err)
		}
	}
}
