#!/usr/bin/env bash
# Bootstraps the self-managed Pulumi backend of one AWS account, once:
#   - S3 bucket agentkeys-pulumi-state-<account>: versioning, default
#     encryption, public-access block, bucket-owner ownership; its policy
#     refuses plain HTTP and keeps the test CI role (pull requests) to test
#     stacks' state objects, whatever IAM grants it;
#   - two KMS keys (rotation on), the secrets providers: alias/agentkeys-pulumi-prod
#     for prod, chain and account stacks (its key policy refuses the test CI
#     role) and alias/agentkeys-pulumi-test for test slots.
# Idempotent: re-running converges settings and creates nothing twice.
# Honours AWS_PROFILE, AWS_REGION and AWS_ENDPOINT_URL (moto_server in tests).
#
# usage: scripts/bootstrap-state.sh [--region REGION] [--account ACCOUNT_ID]
set -euo pipefail

TEST_ALIAS=alias/agentkeys-pulumi-test
PROD_ALIAS=alias/agentkeys-pulumi-prod
LEGACY_ALIAS=alias/agentkeys-pulumi
TEST_ROLE=github-actions-agentkeys-deploy   # policy.CITestRole
region="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"
want_account=""

die() { echo "bootstrap-state: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --region) [ $# -ge 2 ] || die "--region needs a value (example: --region us-east-1)"; region="$2"; shift 2 ;;
    --account) [ $# -ge 2 ] || die "--account needs a value (example: --account 123456789012)"; want_account="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (usage: $0 [--region REGION] [--account ACCOUNT_ID])" ;;
  esac
done

command -v aws >/dev/null 2>&1 || die "the aws CLI is not installed (https://docs.aws.amazon.com/cli/)"
[[ "$region" =~ ^[a-z]{2}(-gov)?-[a-z]+-[0-9]$ ]] || die "region '$region' is not an AWS region (example: --region us-east-1)"
if [ -n "$want_account" ] && ! [[ "$want_account" =~ ^[0-9]{12}$ ]]; then
  die "--account '$want_account' is not a 12-digit account id"
fi

# Older CLIs (Debian's 2.9) ignore AWS_ENDPOINT_URL: pass it explicitly.
endpoint=()
if [ -n "${AWS_ENDPOINT_URL:-}" ]; then endpoint=(--endpoint-url "$AWS_ENDPOINT_URL"); fi
awsr() { aws --region "$region" "${endpoint[@]}" "$@"; }

account="$(awsr sts get-caller-identity --query Account --output text)" ||
  die "cannot call sts get-caller-identity: set AWS_PROFILE to the account's admin profile (agentkeys-admin)"
if [ -n "$want_account" ] && [ "$account" != "$want_account" ]; then
  die "credentials belong to account $account, not $want_account; switch AWS_PROFILE"
fi
bucket="agentkeys-pulumi-state-$account"

# --- state bucket ---------------------------------------------------------
if out="$(awsr s3api head-bucket --bucket "$bucket" 2>&1)"; then
  echo "ok      bucket $bucket exists"
elif grep -qE '403|Forbidden' <<<"$out"; then
  die "bucket $bucket exists but these credentials cannot reach it (another account owns the name, or access is denied): $out"
else
  if [ "$region" = us-east-1 ]; then
    awsr s3api create-bucket --bucket "$bucket" >/dev/null
  else
    awsr s3api create-bucket --bucket "$bucket" --create-bucket-configuration "LocationConstraint=$region" >/dev/null
  fi
  echo "created bucket $bucket"
fi

# State history is the only undo of a bad `pulumi up`.
if [ "$(awsr s3api get-bucket-versioning --bucket "$bucket" --query Status --output text)" = Enabled ]; then
  echo "ok      versioning"
else
  awsr s3api put-bucket-versioning --bucket "$bucket" --versioning-configuration Status=Enabled
  echo "set     versioning"
fi
awsr s3api put-public-access-block --bucket "$bucket" --public-access-block-configuration \
  BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
awsr s3api put-bucket-ownership-controls --bucket "$bucket" \
  --ownership-controls 'Rules=[{ObjectOwnership=BucketOwnerEnforced}]'
awsr s3api put-bucket-encryption --bucket "$bucket" --server-side-encryption-configuration \
  '{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"AES256"},"BucketKeyEnabled":true}]}'
# TLS only; the test CI role reaches no object but meta.yaml and test
# stacks' state (policy.StateBucketPolicy builds the same document).
arn="arn:aws:s3:::$bucket"
keep="\"$arn\",\"$arn/.pulumi/meta.yaml\""
for dir in stacks history backups locks/organization; do
  for glob in 'test.*' 'test/*' 'test-*'; do keep="$keep,\"$arn/.pulumi/$dir/agentkeys/$glob\""; done
done
test_role="arn:aws:iam::$account:role/$TEST_ROLE"
policy="$(printf '{"Version":"2012-10-17","Statement":[{"Sid":"DenyInsecureTransport","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["%s","%s/*"],"Condition":{"Bool":{"aws:SecureTransport":"false"}}},{"Sid":"TestRoleOnlyTestStacks","Effect":"Deny","Principal":"*","Action":"s3:*","NotResource":[%s],"Condition":{"ArnEquals":{"aws:PrincipalArn":"%s"}}}]}' "$arn" "$arn" "$keep" "$test_role")"
awsr s3api put-bucket-policy --bucket "$bucket" --policy "$policy"
echo "ok      public-access block, bucket-owner ownership, SSE, TLS-only policy, test role kept to test stacks"

# --- secrets keys -------------------------------------------------------------
# alias_target ALIAS prints the key id behind ALIAS, or nothing. (ListAliases:
# DescribeKey is subject to the key policy, which moto evaluates without its
# conditions.)
alias_target() {
  local t
  t="$(awsr kms list-aliases --query "Aliases[?AliasName=='$1'].TargetKeyId" --output text)" || die "cannot list KMS aliases in $region"
  [ "$t" = None ] || printf '%s' "$t"
}

# key ALIAS DESCRIPTION PROD: create once, then converge rotation and the key
# policy (policy.KeyPolicy builds the same documents).
key() {
  local alias=$1 desc=$2 prod=$3 id kp
  id="$(alias_target "$alias")"
  if [ -n "$id" ]; then
    echo "ok      KMS key $id ($alias)"
  else
    id="$(awsr kms create-key --description "$desc" \
      --tags TagKey=Name,TagValue="${alias#alias/}" --query KeyMetadata.KeyId --output text)"
    awsr kms create-alias --alias-name "$alias" --target-key-id "$id"
    echo "created KMS key $id ($alias)"
  fi
  awsr kms enable-key-rotation --key-id "$id"
  kp="{\"Sid\":\"EnableIAMPolicies\",\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"arn:aws:iam::$account:root\"},\"Action\":\"kms:*\",\"Resource\":\"*\"}"
  if [ "$prod" = yes ]; then
    kp="$kp,{\"Sid\":\"NeverTheTestRole\",\"Effect\":\"Deny\",\"Principal\":\"*\",\"Action\":\"kms:*\",\"Resource\":\"*\",\"Condition\":{\"ArnEquals\":{\"aws:PrincipalArn\":\"$test_role\"}}}"
  fi
  awsr kms put-key-policy --key-id "$id" --policy-name default --policy "{\"Version\":\"2012-10-17\",\"Statement\":[$kp]}"
}
key "$PROD_ALIAS" "AgentKeys Pulumi secrets: prod, chain and account stacks" yes
key "$TEST_ALIAS" "AgentKeys Pulumi secrets: test slots" no

legacy="$(alias_target "$LEGACY_ALIAS")"
if [ -n "$legacy" ]; then
  cat <<EOF

note    $LEGACY_ALIAS ($legacy) is the single key of earlier versions; move each
        stack still on it to its side's key, then commit its Pulumi.<stack>.yaml:
          pulumi stack change-secrets-provider --stack prod "awskms://$PROD_ALIAS?region=$region"
          pulumi stack change-secrets-provider --stack test-2 "awskms://$TEST_ALIAS?region=$region"
        Schedule the old key's deletion once no stack uses it.
EOF
fi

cat <<EOF

Next (from the repository root; the region is part of the backend URL):
  pulumi login "s3://$bucket?region=$region"
  pulumi stack init account --secrets-provider "awskms://$PROD_ALIAS?region=$region"   # and prod, base
  pulumi stack init test-2 --secrets-provider "awskms://$TEST_ALIAS?region=$region"    # every test slot
stack init and config set rewrite Pulumi.<stack>.yaml: commit it afterwards.
EOF
