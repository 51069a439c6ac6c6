#!/usr/bin/env bash
# Bootstraps the self-managed Pulumi backend of one AWS account, once:
#   - S3 bucket agentkeys-pulumi-state-<account>: versioning, default
#     encryption, public-access block, bucket-owner ownership, TLS-only policy;
#   - KMS key (rotation on) with alias alias/agentkeys-pulumi: the secrets
#     provider, so access keys and the SSH key in state are KMS-encrypted.
# Idempotent: re-running converges settings and creates nothing twice.
# Honours AWS_PROFILE, AWS_REGION and AWS_ENDPOINT_URL (moto_server in tests).
#
# usage: scripts/bootstrap-state.sh [--region REGION] [--account ACCOUNT_ID]
set -euo pipefail

ALIAS=alias/agentkeys-pulumi
region="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"
want_account=""

die() { echo "bootstrap-state: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --region) [ $# -ge 2 ] || die "--region needs a value (example: --region us-east-1)"; region="$2"; shift 2 ;;
    --account) [ $# -ge 2 ] || die "--account needs a value (example: --account 123456789012)"; want_account="$2"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
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
policy="$(printf '{"Version":"2012-10-17","Statement":[{"Sid":"DenyInsecureTransport","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::%s","arn:aws:s3:::%s/*"],"Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}' "$bucket" "$bucket")"
awsr s3api put-bucket-policy --bucket "$bucket" --policy "$policy"
echo "ok      public-access block, bucket-owner ownership, SSE, TLS-only policy"

# --- secrets key ------------------------------------------------------------
if key_id="$(awsr kms describe-key --key-id "$ALIAS" --query KeyMetadata.KeyId --output text 2>/dev/null)"; then
  echo "ok      KMS key $key_id ($ALIAS)"
else
  key_id="$(awsr kms create-key --description "AgentKeys Pulumi secrets provider" \
    --tags TagKey=Name,TagValue=agentkeys-pulumi --query KeyMetadata.KeyId --output text)"
  awsr kms create-alias --alias-name "$ALIAS" --target-key-id "$key_id"
  echo "created KMS key $key_id ($ALIAS)"
fi
awsr kms enable-key-rotation --key-id "$key_id"

cat <<EOF

Next (every stack, from the repository root):
  pulumi login s3://$bucket
  pulumi stack init <stack> --secrets-provider "awskms://$ALIAS?region=$region"
For a stack that exists already with a passphrase:
  pulumi stack change-secrets-provider --stack <stack> "awskms://$ALIAS?region=$region"
EOF
