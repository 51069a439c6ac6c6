package aws

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/agentkeys/agentkeys-infra/test/providers/standin"
)

// invokes are the functions (data sources) the program calls.
func invokes(p *awsProvider) map[string]standin.Invoke {
	return map[string]standin.Invoke{
		"aws:ec2/getEips:getEips":                                   getEips(p),
		"aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider": getOIDCProvider(p),
		"aws:index/getCallerIdentity:getCallerIdentity":             getCallerIdentity(p),
		"aws:kms/getAlias:getAlias":                                 getAlias(p),
	}
}

// getCallerIdentity is aws:index/getCallerIdentity (STS GetCallerIdentity;
// the id is the account).
func getCallerIdentity(p *awsProvider) standin.Invoke {
	return func(ctx context.Context, _ props) (props, error) {
		out, err := p.get().sts.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			return nil, fmt.Errorf("getting STS Caller Identity: %w", err)
		}
		return mk(map[string]any{"accountId": out.Account, "arn": out.Arn, "userId": out.UserId, "id": out.Account}), nil
	}
}

// getAlias is aws:kms/getAlias (data source internal/service/kms/alias_data_source.go):
// the alias by name with its target key; not found is an error.
func getAlias(p *awsProvider) standin.Invoke {
	return func(ctx context.Context, args props) (props, error) {
		c := p.get()
		name := str(args, "name")
		if !strings.HasPrefix(name, "alias/") {
			return nil, fmt.Errorf("name: must begin with alias/, got %s", name)
		}
		pager := kms.NewListAliasesPaginator(c.kms, &kms.ListAliasesInput{})
		for pager.HasMorePages() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("reading KMS Alias (%s): %w", name, err)
			}
			for _, a := range page.Aliases {
				if aws.ToString(a.AliasName) != name {
					continue
				}
				target := aws.ToString(a.TargetKeyId)
				keyArn := ""
				if target != "" {
					k, err := c.kms.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(target)})
					if err != nil {
						return nil, fmt.Errorf("reading KMS Key (%s): %w", target, err)
					}
					keyArn = aws.ToString(k.KeyMetadata.Arn)
				}
				return mk(map[string]any{"arn": a.AliasArn, "id": a.AliasArn, "name": name, "targetKeyId": target, "targetKeyArn": keyArn}), nil
			}
		}
		return nil, fmt.Errorf("reading KMS Alias (%s): couldn't find resource", name)
	}
}

// MotoFills is Python run inside moto_server before it starts
// (mototest.Options.Python): the parts of the AWS API the program uses that
// moto 5.2 lacks, written from the API reference so the stand-in can call
// the real operations.
const MotoFills = `
import random, string
from moto.ses import models as _sesm, responses as _sesr, exceptions as _sese
from moto.core.responses import EmptyResult as _Empty

# SES DeleteReceiptRule (API_DeleteReceiptRule): RuleSetDoesNotExist if
# the set is missing; deleting a rule that is not there succeeds.
def _delete_receipt_rule(self, rule_set_name, rule_name):
    rs = self.receipt_rule_set.get(rule_set_name)
    if rs is None:
        raise _sese.RuleSetDoesNotExist(f"Rule set does not exist: {rule_set_name}")
    rs.rules = [r for r in rs.rules if r["Name"] != rule_name]
_sesm.SESBackend.delete_receipt_rule = _delete_receipt_rule
def _resp_delete_receipt_rule(self):
    self.backend.delete_receipt_rule(self._get_param("RuleSetName"), self._get_param("RuleName"))
    return _Empty()
_sesr.EmailResponse.delete_receipt_rule = _resp_delete_receipt_rule

# SES CreateReceiptRule (API_CreateReceiptRule): AlreadyExists when a rule
# of that name is in the set (moto compares whole rule bodies).
_orig_create_rule = _sesm.SESBackend.create_receipt_rule
def _create_receipt_rule(self, rule_set_name, rule, after):
    rs = self.receipt_rule_set.get(rule_set_name)
    if rs is not None and any(r["Name"] == rule["Name"] for r in rs.rules):
        raise _sese.AlreadyExists(f"Rule already exists: {rule['Name']}")
    return _orig_create_rule(self, rule_set_name, rule, after)
_sesm.SESBackend.create_receipt_rule = _create_receipt_rule

# SESv2 CreateEmailIdentity (API_CreateEmailIdentity): a domain with Easy
# DKIM gets three DKIM tokens (DkimAttributes.Tokens) and the key length it
# asked for; moto returns none. Its LastKeyGenerationTimestamp is an ISO
# string where the REST-JSON protocol has epoch seconds, which the SDK
# cannot parse.
import time as _time
_orig_identity_init = _sesm.EmailIdentity.__init__
def _identity_init(self, *a, **kw):
    _orig_identity_init(self, *a, **kw)
    if "LastKeyGenerationTimestamp" in self.dkim_attributes:
        self.dkim_attributes["LastKeyGenerationTimestamp"] = _time.time()
    if self.identity_type == "DOMAIN" and self.dkim_attributes.get("SigningAttributesOrigin", "AWS_SES") == "AWS_SES":
        alphabet = string.ascii_lowercase + string.digits
        self.dkim_attributes["Tokens"] = ["".join(random.choice(alphabet) for _ in range(32)) for _ in range(3)]
        self.dkim_attributes["CurrentSigningKeyLength"] = self.dkim_attributes.get("NextSigningKeyLength", "RSA_2048_BIT")
        self.dkim_attributes["SigningEnabled"] = True
_sesm.EmailIdentity.__init__ = _identity_init

# Route 53 hosted zone ids begin with Z (Z1D633PJN98FT9 in the API
# reference); moto's are 22 random characters.
import moto.route53.models as _r53m
def _zone_id(self, existing_ids=None, tags=None):
    return "Z" + "".join(random.choice(string.ascii_uppercase + string.digits) for _ in range(20))
_r53m.HostedZoneIdentifier.generate = _zone_id

# Route 53 ChangeResourceRecordSets: a CREATE of a name and type that exist
# fails with InvalidChangeBatch (API reference); moto only refuses an
# identical change it has journaled.
from moto.route53 import exceptions as _r53e
_orig_change = _r53m.Route53Backend.change_resource_record_sets
def _change(self, zoneid, change_list):
    zone = self.get_hosted_zone(zoneid)
    for c in change_list:
        if c["Action"] != "CREATE":
            continue
        rs = c["ResourceRecordSet"]
        name = rs["Name"].rstrip(".").lower() + "."
        if any(r.name.lower() == name and r.type == rs["Type"] and r.set_identifier == rs.get("SetIdentifier") for r in zone.rrsets):
            raise _r53e.ResourceRecordAlreadyExists(name=name, _type=rs["Type"])
    return _orig_change(self, zoneid, change_list)
_r53m.Route53Backend.change_resource_record_sets = _change

# IAM AddClientIDToOpenIDConnectProvider / RemoveClientIDFromOpenIDConnectProvider
# (IAM API reference: both idempotent).
from moto.iam import models as _iamm, responses as _iamr
def _add_client_id(self):
    p = self.backend.get_open_id_connect_provider(self._get_param("OpenIDConnectProviderArn"))
    cid = self._get_param("ClientID")
    if cid not in p.client_id_list:
        p.client_id_list.append(cid)
    return _Empty()
def _remove_client_id(self):
    p = self.backend.get_open_id_connect_provider(self._get_param("OpenIDConnectProviderArn"))
    cid = self._get_param("ClientID")
    p.client_id_list = [c for c in p.client_id_list if c != cid]
    return _Empty()
_iamr.IamResponse.add_client_id_to_open_id_connect_provider = _add_client_id
_iamr.IamResponse.remove_client_id_from_open_id_connect_provider = _remove_client_id
`
