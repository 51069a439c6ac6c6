package iamsim

import (
	"context"
	"testing"
)

// The evaluator must tell allow from deny and refuse to drop a context key
// silently; otherwise every matrix built on it proves nothing.
func TestEvaluatorDecides(t *testing.T) {
	Require(t)
	pol := map[string]any{"Version": "2012-10-17", "Statement": []any{map[string]any{
		"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b1/*",
		"Condition": map[string]any{"Bool": map[string]any{"aws:SecureTransport": "true"}},
	}}}
	user := "arn:aws:iam::123456789012:user/u"
	req := func(name, res string, ctx map[string]any) Request {
		return Request{Name: name, Principal: user, Action: "s3:GetObject", Resource: res,
			ResourceAccount: "123456789012", IdentityPolicies: []NamedPolicy{{Name: "p", Policy: pol}}, Context: ctx}
	}
	tls := map[string]any{"aws:SecureTransport": "true"}
	got, err := Evaluate(context.Background(), []Request{
		req("allowed", "arn:aws:s3:::b1/k", tls),
		req("other-bucket", "arn:aws:s3:::b2/k", tls),
		req("no-tls", "arn:aws:s3:::b1/k", map[string]any{"aws:SecureTransport": "false"}),
		req("typo-key", "arn:aws:s3:::b1/k", map[string]any{"aws:SecureTransport": "true", "s3:nosuchkey": "x"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{Allowed, ImplicitlyDenied, ImplicitlyDenied, Error}
	for i, d := range got {
		if d.Decision != want[i] {
			t.Errorf("%s: got %s (%s), want %s", d.Name, d.Decision, d.Error, want[i])
		}
	}
}
