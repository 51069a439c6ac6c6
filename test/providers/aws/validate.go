package aws

import (
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"

	"github.com/agentkeys/agentkeys-infra/test/providers/standin"
)

// Validation of the upstream provider's schemas, run in Check (the real
// provider reports these as check failures before anything is called).

var (
	// validResourceName (internal/service/iam/validate.go): role, policy and
	// instance profile names.
	iamNameRe = regexp.MustCompile(`^[\w+=,.@-]*$`)
	// aws_iam_user name (internal/service/iam/user.go).
	iamUserRe = regexp.MustCompile(`^[0-9A-Za-z=,.@\-_+]+$`)
	// validRolePolicyName / user policy name (internal/service/iam/validate.go).
	iamPolicyNameRe = regexp.MustCompile(`^[\w+=,.@-]+$`)
	// SES rule and rule set names (internal/service/ses/validate.go:
	// validRuleSetName, validRuleName; SES API CreateReceiptRule).
	sesNameRe = regexp.MustCompile(`^[0-9A-Za-z_.-]+$`)
	arnRe     = regexp.MustCompile(`^arn:[\w-]+:[\w-]+:[\w-]*:(\d{12}|aws)?:.+$`)
)

// nameCheck checks a name property against a pattern and a length range.
func nameCheck(in standin.Props, prop string, re *regexp.Regexp, min, max int, what string) []plugin.CheckFailure {
	if !standin.Has(in, prop) {
		return nil
	}
	v := standin.Str(in, prop)
	var out []plugin.CheckFailure
	if len(v) < min || len(v) > max {
		out = append(out, standin.Fail(prop, "expected length of %s to be in the range (%d - %d), got %s", prop, min, max, v))
	}
	if !re.MatchString(v) {
		out = append(out, standin.Fail(prop, "invalid value for %s (%s)", prop, what))
	}
	return out
}

// jsonCheck is validation.StringIsJSON.
func jsonCheck(in standin.Props, prop string) []plugin.CheckFailure {
	if !standin.Has(in, prop) {
		return nil
	}
	var v any
	if err := json.Unmarshal([]byte(standin.Str(in, prop)), &v); err != nil {
		return []plugin.CheckFailure{standin.Fail(prop, "%q contains an invalid JSON: %v", prop, err)}
	}
	return nil
}

// policyCheck is verify.ValidIAMPolicyJSON: a JSON object, no leading
// whitespace.
func policyCheck(in standin.Props, prop string) []plugin.CheckFailure {
	if !standin.Has(in, prop) {
		return nil
	}
	s := standin.Str(in, prop)
	if len(s) > 0 && s[0] != '{' {
		if strings.TrimSpace(s) != s {
			return []plugin.CheckFailure{standin.Fail(prop, "%q contains an invalid JSON policy: leading space characters are not allowed", prop)}
		}
		return []plugin.CheckFailure{standin.Fail(prop, "%q contains an invalid JSON policy: not a JSON object", prop)}
	}
	return jsonCheck(in, prop)
}

func arnCheck(in standin.Props, prop string) []plugin.CheckFailure {
	if !standin.Has(in, prop) {
		return nil
	}
	if v := standin.Str(in, prop); !arnRe.MatchString(v) {
		return []plugin.CheckFailure{standin.Fail(prop, "%q (%s) is an invalid ARN", prop, v)}
	}
	return nil
}

func oneOf(in standin.Props, prop string, values ...string) []plugin.CheckFailure {
	if !standin.Has(in, prop) {
		return nil
	}
	v := standin.Str(in, prop)
	for _, ok := range values {
		if v == ok {
			return nil
		}
	}
	return []plugin.CheckFailure{standin.Fail(prop, "expected %s to be one of %q, got %s", prop, values, v)}
}

func intRange(in standin.Props, prop string, min, max int) []plugin.CheckFailure {
	if !standin.Has(in, prop) {
		return nil
	}
	if v := standin.Int(in, prop); v < min || v > max {
		return []plugin.CheckFailure{standin.Fail(prop, "expected %s to be in the range (%d - %d), got %d", prop, min, max, v)}
	}
	return nil
}

// bucketNameError applies the S3 bucket naming rules CreateBucket enforces
// in every region since 2018 (S3 user guide, "Bucket naming rules"); moto
// accepts names S3 refuses.
func bucketNameError(name string) error {
	switch {
	case len(name) < 3 || len(name) > 63:
		return fmt.Errorf("InvalidBucketName: %q must be between 3 and 63 characters long", name)
	case !regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*[a-z0-9]$`).MatchString(name):
		return fmt.Errorf("InvalidBucketName: %q may contain only lowercase letters, digits, dots and hyphens, and must begin and end with a letter or digit", name)
	case strings.Contains(name, ".."):
		return fmt.Errorf("InvalidBucketName: %q must not contain two adjacent periods", name)
	case net.ParseIP(name) != nil:
		return fmt.Errorf("InvalidBucketName: %q must not be formatted as an IP address", name)
	case strings.HasPrefix(name, "xn--") || strings.HasPrefix(name, "sthree-") || strings.HasSuffix(name, "-s3alias") || strings.HasSuffix(name, "--ol-s3"):
		return fmt.Errorf("InvalidBucketName: %q uses a reserved prefix or suffix", name)
	}
	return nil
}

// regexpAny matches every value (a length-only check).
var regexpAny = regexp.MustCompile(`(?s)^.*$`)
