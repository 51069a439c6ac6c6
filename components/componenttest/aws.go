package componenttest

import (
	"strconv"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

// MockAccount is the account id the default outputs put in ARNs.
const MockAccount = "123456789012"

// MockPublicIP is the address a newly allocated mock EIP gets.
const MockPublicIP = "203.0.113.10"

// AWSOutputs returns provider-computed outputs for the AWS resource types the
// components declare: ARNs, EIP addresses, DKIM tokens and access-key secrets.
func AWSOutputs() map[string]OutputsFunc {
	prop := resource.NewStringProperty
	iamARN := func(kind string) OutputsFunc {
		return func(r Resource) resource.PropertyMap {
			return resource.PropertyMap{"arn": prop("arn:aws:iam::" + MockAccount + ":" + kind + "/" + r.Str("name"))}
		}
	}
	return map[string]OutputsFunc{
		"aws:ec2/eip:Eip": func(r Resource) resource.PropertyMap {
			ip := MockPublicIP
			if r.ImportID != "" {
				ip = ImportedIP(r.ImportID)
			}
			return resource.PropertyMap{"publicIp": prop(ip), "allocationId": prop(r.ID)}
		},
		"aws:sesv2/emailIdentity:EmailIdentity": func(r Resource) resource.PropertyMap {
			id := r.Str("emailIdentity")
			attrs := resource.PropertyMap{}
			if v, ok := r.Input("dkimSigningAttributes"); ok && v.IsObject() {
				attrs = v.ObjectValue().Copy()
			}
			attrs["tokens"] = resource.NewArrayProperty([]resource.PropertyValue{prop("tok0" + r.Name), prop("tok1" + r.Name), prop("tok2" + r.Name)})
			return resource.PropertyMap{
				"dkimSigningAttributes": resource.NewObjectProperty(attrs),
				"arn":                   prop("arn:aws:ses:us-east-1:" + MockAccount + ":identity/" + id),
			}
		},
		"aws:iam/accessKey:AccessKey": func(r Resource) resource.PropertyMap {
			return resource.PropertyMap{
				"secret":            prop("mock-secret-" + r.Name),
				"sesSmtpPasswordV4": prop("mock-smtp-" + r.Name),
			}
		},
		"aws:iam/user:User":                       iamARN("user"),
		"aws:iam/role:Role":                       iamARN("role"),
		"aws:iam/instanceProfile:InstanceProfile": iamARN("instance-profile"),
		"aws:iam/openIdConnectProvider:OpenIdConnectProvider": func(r Resource) resource.PropertyMap {
			return resource.PropertyMap{"arn": prop("arn:aws:iam::" + MockAccount + ":oidc-provider/" + strings.TrimPrefix(r.Str("url"), "https://"))}
		},
		"aws:s3/bucketV2:BucketV2": func(r Resource) resource.PropertyMap {
			return resource.PropertyMap{"arn": prop("arn:aws:s3:::" + r.Str("bucket"))}
		},
		"aws:route53/record:Record": func(r Resource) resource.PropertyMap {
			return resource.PropertyMap{"fqdn": prop(r.Str("name"))}
		},
	}
}

// ImportedIP is the public address the default outputs give an imported EIP:
// 198.51.100.<n> where n is derived from the allocation id, so tests can tell
// adopted addresses apart.
func ImportedIP(allocationID string) string {
	n := 0
	for _, c := range allocationID {
		n = (n*31 + int(c)) % 250
	}
	return "198.51.100." + strconv.Itoa(n+1)
}
