#!/usr/bin/env bash
# Writes a one-record CloudTrail log file (a root console sign-in without MFA) and uploads it
# to the trail bucket where CloudTrail itself would put it, so the whole path - notification,
# queue, trailwarden, SNS - produces an alert within a minute.
#
# The record is fake but shaped like the real thing: eventSource signin.amazonaws.com,
# eventName ConsoleLogin, userIdentity.type Root, responseElements.ConsoleLogin "Success",
# additionalEventData.MFAUsed "No", recorded in us-east-1 like every root sign-in.
#
# The object lands among real logs, so the script prints the command that deletes it. Trail
# bucket policies often allow writes from CloudTrail only; then upload with a role the policy
# admits, or run `trailwarden scan` on the local file instead (--local-only).
#
# Needs: aws (CLI v1 or v2), gzip.

set -euo pipefail

usage() {
  cat <<'EOF'
Usage: deploy/send-test-event.sh --bucket BUCKET [--prefix PREFIX] [--account ID]
                                 [--org-id o-xxxxxxxxxx] [--local-only] [--out FILE]

  --bucket BUCKET   Trail bucket to upload to.
  --prefix PREFIX   Trail key prefix ending in "/" (default: none).
  --account ID      Account the fake sign-in happened in (default: the caller's).
  --org-id ID       Use the organization-trail key layout AWSLogs/<org-id>/<account>/...
  --local-only      Only write the file; print where it would go.
  --out FILE        Where to write the file (default: a temporary file).
EOF
}

die() {
  printf 'send-test-event: %s\n' "$*" >&2
  exit 1
}

bucket="" prefix="" account="" org_id="" local_only=false out=""
while (($#)); do
  case "$1" in
    --bucket) bucket="${2:?}"; shift 2 ;;
    --prefix) prefix="${2-}"; shift 2 ;;
    --account) account="${2:?}"; shift 2 ;;
    --org-id) org_id="${2:?}"; shift 2 ;;
    --local-only) local_only=true; shift ;;
    --out) out="${2:?}"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

$local_only || [[ -n "$bucket" ]] || die "--bucket is required (or --local-only)"
if [[ -n "$prefix" && "$prefix" != */ ]]; then
  die "--prefix must end with / (got '$prefix')"
fi
if [[ -z "$account" ]]; then
  if $local_only; then
    account="111122223333"
  else
    account="$(aws sts get-caller-identity --query Account --output text)"
  fi
fi
[[ "$account" =~ ^[0-9]{12}$ ]] || die "account must be 12 digits (got '$account')"

uuid() {
  if command -v uuidgen >/dev/null; then
    uuidgen | tr '[:upper:]' '[:lower:]'
  else
    cat /proc/sys/kernel/random/uuid
  fi
}

event_time="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
day_path="$(date -u +%Y/%m/%d)"
stamp="$(date -u +%Y%m%dT%H%MZ)"
region="us-east-1"

# Key layout as CloudTrail writes it; "trailwardentest" stands where CloudTrail puts a random
# suffix, so the object is easy to find and delete.
account_path="$account"
[[ -n "$org_id" ]] && account_path="$org_id/$account"
key="${prefix}AWSLogs/${account_path}/CloudTrail/${region}/${day_path}/${account}_CloudTrail_${region}_${stamp}_trailwardentest.json.gz"

# Keep the .json.gz name: it is what CloudTrail writes and what `trailwarden scan` expects.
[[ -n "$out" ]] || out="$(mktemp -d "${TMPDIR:-/tmp}/trailwarden-test.XXXXXX")/${key##*/}"

gzip -c >"$out" <<EOF
{"Records":[{
  "eventVersion": "1.09",
  "userIdentity": {
    "type": "Root",
    "principalId": "${account}",
    "arn": "arn:aws:iam::${account}:root",
    "accountId": "${account}",
    "accessKeyId": ""
  },
  "eventTime": "${event_time}",
  "eventSource": "signin.amazonaws.com",
  "eventName": "ConsoleLogin",
  "awsRegion": "${region}",
  "sourceIPAddress": "203.0.113.10",
  "userAgent": "Mozilla/5.0 (trailwarden test event)",
  "requestParameters": null,
  "responseElements": {"ConsoleLogin": "Success"},
  "additionalEventData": {
    "LoginTo": "https://console.aws.amazon.com/console/home",
    "MobileVersion": "No",
    "MFAUsed": "No"
  },
  "eventID": "$(uuid)",
  "readOnly": false,
  "eventType": "AwsConsoleSignIn",
  "managementEvent": true,
  "recipientAccountId": "${account}",
  "eventCategory": "Management",
  "tlsDetails": {"tlsVersion": "TLSv1.3", "clientProvidedHostHeader": "signin.aws.amazon.com"}
}]}
EOF

echo "Wrote $out"
if $local_only; then
  echo "Would upload to s3://${bucket:-BUCKET}/$key"
  exit 0
fi

aws s3 cp "$out" "s3://$bucket/$key"
cat <<EOF
Uploaded s3://$bucket/$key
Expect an alert for a root console sign-in on the alert topic within about a minute.
Delete the test object afterwards:
  aws s3 rm 's3://$bucket/$key'
EOF
