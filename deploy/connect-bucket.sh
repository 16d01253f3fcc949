#!/usr/bin/env bash
# Points an existing CloudTrail bucket at a trailwarden stack's queue.
#
# CloudFormation cannot change the notification configuration of a bucket it does not own,
# so this script does it with the AWS CLI, in one of two ways:
#
#   --mode s3           S3 event notification straight to the queue: s3:ObjectCreated:* for
#                       keys under <prefix>AWSLogs/ ending in .json.gz. Works when the bucket
#                       is in another account (run it with that account's credentials).
#   --mode eventbridge  Turn on the bucket's EventBridge delivery; the stack's rule forwards
#                       matching "Object Created" events to the queue. Same account and
#                       region only.
#
# put-bucket-notification-configuration REPLACES the bucket's whole configuration. This
# script reads the current one, merges its own entry into it (keeping every other queue,
# topic, Lambda and EventBridge setting), shows the result, and asks before writing.
#
# Needs: aws (CLI v1 or v2) and jq.

set -euo pipefail

readonly CONFIG_ID_DEFAULT="trailwarden"

usage() {
  cat <<'EOF'
Usage:
  deploy/connect-bucket.sh --stack-name NAME [options]
  deploy/connect-bucket.sh --bucket BUCKET --queue-arn ARN --mode s3 [options]

Options:
  --stack-name NAME    Read bucket, key prefix, queue and mode from the stack's outputs.
  --bucket NAME        Trail bucket (overrides the stack output).
  --queue-arn ARN      Queue to notify (overrides the stack output). Needed with --mode s3
                       when the stack lives in another account.
  --prefix PREFIX      Trail key prefix ending in "/", or "" (default: the stack output).
  --mode s3|eventbridge
                       Notification mode (default: the stack's NotificationMode).
  --id ID              Id of the queue configuration entry (default: trailwarden).
  --region REGION      AWS region (default: the CLI's).
  --expected-owner ID  Fail unless the bucket belongs to this account.
  --current-config FILE
                       Use FILE as the current configuration instead of reading it from S3
                       (for reviewing a change offline; implies --dry-run).
  --disconnect         Remove this script's queue entry instead of adding it (--mode s3).
  --dry-run            Print the new configuration and stop.
  --yes                Do not ask before writing.
  -h, --help           This text.
EOF
}

die() {
  printf 'connect-bucket: %s\n' "$*" >&2
  exit 1
}

stack="" bucket="" queue_arn="" prefix="" prefix_set=false mode="" region=""
config_id="$CONFIG_ID_DEFAULT" expected_owner="" current_file=""
disconnect=false dry_run=false assume_yes=false

while (($#)); do
  case "$1" in
    --stack-name) stack="${2:?}"; shift 2 ;;
    --bucket) bucket="${2:?}"; shift 2 ;;
    --queue-arn) queue_arn="${2:?}"; shift 2 ;;
    --prefix) prefix="${2-}"; prefix_set=true; shift 2 ;;
    --mode) mode="${2:?}"; shift 2 ;;
    --id) config_id="${2:?}"; shift 2 ;;
    --region) region="${2:?}"; shift 2 ;;
    --expected-owner) expected_owner="${2:?}"; shift 2 ;;
    --current-config) current_file="${2:?}"; dry_run=true; shift 2 ;;
    --disconnect) disconnect=true; shift ;;
    --dry-run) dry_run=true; shift ;;
    --yes) assume_yes=true; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

command -v jq >/dev/null || die "jq is required"
command -v aws >/dev/null || [[ -n "$current_file" ]] || die "the AWS CLI is required"

aws_cli() {
  if [[ -n "$region" ]]; then
    aws --region "$region" "$@"
  else
    aws "$@"
  fi
}

# ---- settings from the stack ------------------------------------------------------------------

if [[ -n "$stack" ]]; then
  outputs="$(aws_cli cloudformation describe-stacks --stack-name "$stack" \
    --query 'Stacks[0].Outputs' --output json)"
  output() { jq -r --arg k "$1" '.[] | select(.OutputKey == $k) | .OutputValue' <<<"$outputs"; }
  [[ -n "$bucket" ]] || bucket="$(output TrailBucketName)"
  [[ -n "$queue_arn" ]] || queue_arn="$(output QueueArn)"
  $prefix_set || prefix="$(output TrailKeyPrefix)"
  if [[ -z "$mode" ]]; then
    case "$(output NotificationMode)" in
      EventBridge) mode="eventbridge" ;;
      *) mode="s3" ;;
    esac
  fi
fi

[[ -n "$bucket" ]] || die "no bucket: pass --stack-name or --bucket"
mode="${mode:-s3}"
case "$mode" in
  s3) [[ -n "$queue_arn" ]] || die "no queue: pass --stack-name or --queue-arn" ;;
  eventbridge) $disconnect && die "--disconnect applies to --mode s3 only (EventBridge delivery may serve other rules)" ;;
  *) die "--mode must be s3 or eventbridge" ;;
esac
if [[ -n "$prefix" && "$prefix" != */ ]]; then
  die "--prefix must end with / (got '$prefix')"
fi

# ---- current configuration --------------------------------------------------------------------

if [[ -n "$current_file" ]]; then
  current="$(cat "$current_file")"
else
  owner_args=()
  [[ -n "$expected_owner" ]] && owner_args=(--expected-bucket-owner "$expected_owner")
  current="$(aws_cli s3api get-bucket-notification-configuration --bucket "$bucket" \
    ${owner_args[@]+"${owner_args[@]}"} --output json)"
fi
# The CLI prints nothing for a bucket without notifications.
[[ -n "${current//[[:space:]]/}" ]] || current='{}'
jq -e 'type == "object"' >/dev/null <<<"$current" || die "current configuration is not a JSON object"

# ---- merge ------------------------------------------------------------------------------------

if [[ "$mode" == "s3" ]]; then
  # S3 refuses two configurations for the same event type whose prefix/suffix filters overlap.
  others="$(jq -r --arg id "$config_id" '
      [ (.QueueConfigurations // [])[], (.TopicConfigurations // [])[],
        (.LambdaFunctionConfigurations // [])[] ]
      | map(select(.Id != $id and any(.Events[]; startswith("s3:ObjectCreated"))))
      | .[] | "  \(.Id // "(no id)") -> \(.QueueArn // .TopicArn // .LambdaFunctionArn)"' <<<"$current")"
  if [[ -n "$others" ]] && ! $disconnect; then
    printf 'connect-bucket: the bucket already sends ObjectCreated events to:\n%s\n' "$others" >&2
    printf 'If their key filters overlap %sAWSLogs/*.json.gz, S3 will reject the change;\n' "$prefix" >&2
    printf 'use --mode eventbridge (same account) or fan out through one SNS topic instead.\n' >&2
  fi

  if $disconnect; then
    merged="$(jq --arg id "$config_id" '
        .QueueConfigurations = [(.QueueConfigurations // [])[] | select(.Id != $id)]
        | if .QueueConfigurations == [] then del(.QueueConfigurations) else . end' <<<"$current")"
  else
    merged="$(jq --arg id "$config_id" --arg arn "$queue_arn" --arg prefix "${prefix}AWSLogs/" '
        .QueueConfigurations = [(.QueueConfigurations // [])[] | select(.Id != $id)] + [{
          Id: $id,
          QueueArn: $arn,
          Events: ["s3:ObjectCreated:*"],
          Filter: {Key: {FilterRules: [
            {Name: "prefix", Value: $prefix},
            {Name: "suffix", Value: ".json.gz"}
          ]}}
        }]' <<<"$current")"
  fi
else
  merged="$(jq '.EventBridgeConfiguration = {}' <<<"$current")"
fi

printf 'Bucket: %s\nMode:   %s\n\nCurrent notification configuration:\n%s\n\nNew notification configuration (replaces the current one):\n%s\n' \
  "$bucket" "$mode" "$(jq . <<<"$current")" "$(jq . <<<"$merged")"

if $dry_run; then
  exit 0
fi
if ! $assume_yes; then
  [[ -t 0 ]] || die "not a terminal: pass --yes to write the configuration"
  read -r -p "Write this configuration to s3://$bucket? [y/N] " answer
  [[ "$answer" == [yY]* ]] || die "nothing written"
fi

# ---- write ------------------------------------------------------------------------------------

config_file="$(mktemp)"
trap 'rm -f "$config_file"' EXIT
printf '%s\n' "$merged" >"$config_file"
owner_args=()
[[ -n "$expected_owner" ]] && owner_args=(--expected-bucket-owner "$expected_owner")
aws_cli s3api put-bucket-notification-configuration --bucket "$bucket" \
  --notification-configuration "file://$config_file" ${owner_args[@]+"${owner_args[@]}"}

if [[ "$mode" == "s3" ]] && ! $disconnect; then
  # S3 checked that the queue policy lets it send and put an s3:TestEvent on the queue.
  echo "Connected: new objects under ${prefix}AWSLogs/ are announced on $queue_arn."
elif [[ "$mode" == "eventbridge" ]]; then
  echo "EventBridge delivery is on for $bucket; the stack's rule forwards new log objects."
else
  echo "Disconnected: $config_id removed from $bucket."
fi
