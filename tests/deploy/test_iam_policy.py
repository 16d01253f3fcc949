"""Pins the permissions and safety settings of deploy/template.yaml.

The template is read with cfn-lint's own YAML decoder, which understands the short
intrinsic-function tags (!Sub, !GetAtt, !If ...). Each expected policy is written out in full,
so widening a permission is a deliberate change to this file as well as to the template.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import pytest
from cfnlint.decode import decode_str

REPO = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO / "deploy" / "template.yaml"
FORWARD_PATH = REPO / "deploy" / "forward-events.yaml"
MEMBER_ROLE_PATH = REPO / "deploy" / "audit-member-role.yaml"
DOCKERFILE_PATH = REPO / "Dockerfile"

HEALTHCHECK = ["/usr/local/bin/trailwarden", "healthcheck"]
# The posture audit's reads that IAM authorizes on no resource type, so only on "*"
# (https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html).
ACCOUNT_WIDE_READS = {
    "iam:GenerateCredentialReport",
    "iam:GetCredentialReport",
    "iam:GetAccountSummary",
    "iam:GetAccountPasswordPolicy",
    "iam:GetAccountAuthorizationDetails",
    "iam:ListOrganizationsFeatures",
    "cloudtrail:DescribeTrails",
    "access-analyzer:ListAnalyzers",
    "organizations:DescribeOrganization",
    "organizations:ListAWSServiceAccessForOrganization",
}
NO_VALUE = {"Ref": "AWS::NoValue"}


# ---- helpers --------------------------------------------------------------------------------


def load(path: Path) -> dict:
    decoded, errors = decode_str(path.read_text())
    assert not errors, [str(e) for e in errors]
    # cfn-lint returns its own node classes; plain JSON values compare more simply.
    return json.loads(json.dumps(decoded))


@pytest.fixture(scope="module")
def template() -> dict:
    return load(TEMPLATE_PATH)


@pytest.fixture(scope="module")
def forward() -> dict:
    return load(FORWARD_PATH)


@pytest.fixture(scope="module")
def member_role() -> dict:
    return load(MEMBER_ROLE_PATH)


def resource(template: dict, name: str, type_: str) -> dict:
    res = template["Resources"][name]
    assert res["Type"] == type_, f"{name} is {res['Type']}, expected {type_}"
    return res


def resources_of_type(template: dict, type_: str) -> dict[str, dict]:
    return {n: r for n, r in template["Resources"].items() if r["Type"] == type_}


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def statements(document: dict) -> list[tuple[dict, str | None]]:
    """(statement, CloudFormation condition guarding it or None), with Fn::If unfolded."""
    out = []
    for stmt in as_list(document["Statement"]):
        if "Fn::If" in stmt:
            cond, when_true, when_false = stmt["Fn::If"]
            for branch, guard in ((when_true, cond), (when_false, f"!{cond}")):
                if branch != NO_VALUE:
                    out.append((branch, guard))
        else:
            out.append((stmt, None))
    return out


def normalise(stmt: dict, guard: str | None) -> dict:
    """A statement without its Sid, with actions sorted, for order-free comparison."""
    norm = {k: v for k, v in stmt.items() if k != "Sid"}
    norm["Action"] = sorted(as_list(stmt["Action"]))
    norm["Guard"] = guard
    return norm


def canonical(items: list[dict]) -> list[str]:
    return sorted(json.dumps(i, sort_keys=True) for i in items)


def role_statements(template: dict, role_name: str) -> list[dict]:
    role = resource(template, role_name, "AWS::IAM::Role")["Properties"]
    assert "ManagedPolicyArns" not in role, f"{role_name} must use its inline policy only"
    policies = role["Policies"]
    assert len(policies) == 1, f"{role_name} should have exactly one inline policy"
    return [normalise(s, g) for s, g in statements(policies[0]["PolicyDocument"])]


def all_policy_documents(template: dict) -> list[tuple[str, str, dict]]:
    """(resource name, kind, document) for every policy document in the template."""
    docs = []
    for name, res in template["Resources"].items():
        props = res.get("Properties", {})
        type_ = res["Type"]
        if type_ == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                docs.append((name, "identity", policy["PolicyDocument"]))
            docs.append((name, "trust", props["AssumeRolePolicyDocument"]))
        elif type_ in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            docs.append((name, "identity", props["PolicyDocument"]))
        elif type_ in ("AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy", "AWS::S3::BucketPolicy"):
            docs.append((name, "resource", props["PolicyDocument"]))
        elif type_ == "AWS::KMS::Key":
            docs.append((name, "key", props["KeyPolicy"]))
    return docs


def task_container(template: dict) -> dict:
    task = resource(template, "TaskDefinition", "AWS::ECS::TaskDefinition")["Properties"]
    (container,) = task["ContainerDefinitions"]
    return container


def environment(container: dict) -> dict:
    env = {}
    for entry in container["Environment"]:
        if "Fn::If" in entry:
            entry = entry["Fn::If"][1]
        env[entry["Name"]] = entry["Value"]
    return env


# ---- task role ------------------------------------------------------------------------------

# The posture audit's and re-checks' reads: the task role's and the member role's alike.
POSTURE_READS = [
    # The posture audit's account-wide reads: actions without a resource type.
    {
        "Effect": "Allow",
        "Action": sorted(ACCOUNT_WIDE_READS),
        "Resource": "*",
        "Guard": None,
    },
    # A re-check's reads of one user, on the account's users only.
    {
        "Effect": "Allow",
        "Action": sorted(
            [
                "iam:GetUser",
                "iam:GetLoginProfile",
                "iam:ListMFADevices",
                "iam:ListAccessKeys",
                "iam:GetAccessKeyLastUsed",
                "iam:ListGroupsForUser",
                "iam:ListAttachedUserPolicies",
                "iam:ListUserPolicies",
                "iam:GetUserPolicy",
            ]
        ),
        "Resource": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:user/*"},
        "Guard": None,
    },
    {
        "Effect": "Allow",
        "Action": ["iam:GetPolicy", "iam:GetPolicyVersion"],
        "Resource": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/*"},
        "Guard": None,
    },
    {
        "Effect": "Allow",
        "Action": ["cloudtrail:GetEventSelectors", "cloudtrail:GetTrailStatus"],
        "Resource": {"Fn::Sub": "arn:${AWS::Partition}:cloudtrail:*:*:trail/*"},
        "Guard": None,
    },
]



def test_task_role_has_exactly_the_daemon_permissions(template):
    expected = [
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": {"Fn::Sub": "arn:${AWS::Partition}:s3:::${TrailBucketName}/${TrailKeyPrefix}AWSLogs/*"},
            "Guard": None,
        },
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": {"Fn::Sub": "arn:${AWS::Partition}:s3:::${TrailBucketName}"},
            "Condition": {"StringLike": {"s3:prefix": {"Fn::Sub": "${TrailKeyPrefix}AWSLogs/*"}}},
            "Guard": None,
        },
        {
            "Effect": "Allow",
            "Action": ["kms:Decrypt"],
            "Resource": {"Ref": "TrailKmsKeyArn"},
            "Guard": "HasTrailKmsKey",
        },
        {
            "Effect": "Allow",
            "Action": sorted(
                [
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes",
                ]
            ),
            "Resource": {"Fn::GetAtt": ["Queue", "Arn"]},
            "Guard": None,
        },
        # Publish, and the start-up check that the topic exists.
        {
            "Effect": "Allow",
            "Action": ["sns:GetTopicAttributes", "sns:Publish"],
            "Resource": {"Ref": "AlertTopic"},
            "Guard": None,
        },
        # The state store's calls and its start-up check, on the stack's table only.
        {
            "Effect": "Allow",
            "Action": sorted(
                [
                    "dynamodb:DescribeTable",
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                    "dynamodb:Query",
                    "dynamodb:BatchWriteItem",
                ]
            ),
            "Resource": {"Fn::GetAtt": ["StateTable", "Arn"]},
            "Guard": None,
        },
        # The alert topic uses a customer managed key so that CloudWatch alarms can publish to
        # it; a publisher then needs the data key, through SNS only.
        {
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": {"Fn::GetAtt": ["AlertTopicKey", "Arn"]},
            "Condition": {"StringEquals": {"kms:ViaService": {"Fn::Sub": "sns.${AWS::Region}.amazonaws.com"}}},
            "Guard": None,
        },
        *POSTURE_READS,
        # The organization's accounts, for its audit or for account names; the member role in
        # each by name, for the audit only.
        {
            "Effect": "Allow",
            "Action": ["organizations:ListAccounts"],
            "Resource": "*",
            "Guard": "ListsAccounts",
        },
        {
            "Effect": "Allow",
            "Action": ["sts:AssumeRole"],
            "Resource": {"Fn::Sub": "arn:${AWS::Partition}:iam::*:role/${AuditRoleName}"},
            "Guard": "AuditOrganization",
        },
    ]
    assert canonical(role_statements(template, "TaskRole")) == canonical(expected)


def test_the_member_role_reads_exactly_what_the_audit_reads(member_role):
    assert canonical(role_statements(member_role, "AuditRole")) == canonical(POSTURE_READS)
    props = resource(member_role, "AuditRole", "AWS::IAM::Role")["Properties"]
    assert props["RoleName"] == {"Ref": "RoleName"}
    assert member_role["Parameters"]["RoleName"]["Default"] == "trailwarden-audit"
    (stmt,) = as_list(props["AssumeRolePolicyDocument"]["Statement"])
    assert stmt["Effect"] == "Allow"
    assert stmt["Principal"] == {"AWS": {"Ref": "AuditorRoleArn"}}
    assert as_list(stmt["Action"]) == ["sts:AssumeRole"]
    assert stmt["Condition"] == {
        "Fn::If": ["HasExternalId", {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}}, NO_VALUE]
    }
    assert member_role["Parameters"]["ExternalId"]["Default"] == ""
    assert member_role["Parameters"]["ExternalId"]["NoEcho"] is True


def test_organization_mode_is_off_unless_a_role_is_named(template):
    assert template["Parameters"]["AuditRoleName"]["Default"] == ""
    assert template["Conditions"]["AuditOrganization"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AuditRoleName"}, ""]}]
    }
    env = task_container(template)["Environment"]
    guarded = {e["Fn::If"][1]["Name"]: e["Fn::If"][0] for e in env if "Fn::If" in e}
    assert guarded["TRAILWARDEN_AUDIT_ACCOUNTS"] == "AuditOrganization"
    assert guarded["TRAILWARDEN_AUDIT_ROLE_NAME"] == "AuditOrganization"
    assert guarded["TRAILWARDEN_AUDIT_EXTERNAL_ID"] == "HasAuditExternalId"


def test_account_names_from_organizations_are_off_unless_asked_for(template):
    assert template["Parameters"]["AccountNamesFromOrganizations"]["Default"] == "false"
    assert template["Conditions"]["ListsAccounts"] == {
        "Fn::Or": [{"Condition": "AuditOrganization"}, {"Condition": "NamesFromOrganizations"}]
    }
    env = task_container(template)["Environment"]
    guarded = {e["Fn::If"][1]["Name"]: e["Fn::If"][0] for e in env if "Fn::If" in e}
    assert guarded["TRAILWARDEN_ACCOUNT_NAMES_FROM_ORGANIZATIONS"] == "NamesFromOrganizations"


def test_posture_permissions_are_read_only(template):
    actions = [a for s in role_statements(template, "TaskRole") for a in s["Action"]]
    posture = [a for a in actions if a.split(":")[0] in ("iam", "cloudtrail", "access-analyzer", "organizations")]
    assert posture, "the task role carries the posture reads"
    for action in posture:
        verb = action.split(":")[1]
        assert verb.startswith(("Get", "List", "Describe", "GenerateCredentialReport")), action
    # Entering member accounts is the one non-read, and only into the named role.
    assume = [a for a in actions if a.startswith("sts:")]
    assert assume == ["sts:AssumeRole"]


def test_task_role_targets_are_the_stack_resources(template):
    queue = resource(template, "Queue", "AWS::SQS::Queue")
    # The consumed queue is the main queue (it has the redrive policy), not the DLQ.
    assert "RedrivePolicy" in queue["Properties"]
    resource(template, "AlertTopic", "AWS::SNS::Topic")
    resource(template, "AlertTopicKey", "AWS::KMS::Key")
    assert template["Conditions"]["HasTrailKmsKey"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "TrailKmsKeyArn"}, ""]}]
    }
    assert template["Parameters"]["TrailKmsKeyArn"]["Default"] == ""


def test_no_policy_is_attached_to_roles_from_outside(template):
    for type_ in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        assert not resources_of_type(template, type_), f"unexpected {type_}: review and pin it here"


def test_roles_are_assumable_by_ecs_tasks_only(template):
    for name in ("TaskRole", "ExecutionRole"):
        trust = resource(template, name, "AWS::IAM::Role")["Properties"]["AssumeRolePolicyDocument"]
        for stmt, _ in statements(trust):
            assert stmt["Effect"] == "Allow"
            assert stmt["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
            assert as_list(stmt["Action"]) == ["sts:AssumeRole"]
    task_trust = template["Resources"]["TaskRole"]["Properties"]["AssumeRolePolicyDocument"]
    (stmt,) = as_list(task_trust["Statement"])
    assert set(stmt["Condition"]["StringEquals"]) == {"aws:SourceAccount"}
    assert set(stmt["Condition"]["ArnLike"]) == {"aws:SourceArn"}


# ---- execution role -------------------------------------------------------------------------


def test_execution_role_only_pulls_the_image_and_writes_logs(template):
    expected = [
        {
            "Effect": "Allow",
            "Action": ["ecr:GetAuthorizationToken"],
            "Resource": "*",
            "Guard": None,
        },
        {
            "Effect": "Allow",
            "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            "Resource": {"Fn::Sub": "arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/*"},
            "Guard": None,
        },
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": {"Fn::GetAtt": ["LogGroup", "Arn"]},
            "Guard": None,
        },
    ]
    assert canonical(role_statements(template, "ExecutionRole")) == canonical(expected)


# ---- every policy document ------------------------------------------------------------------

WILDCARD_ACTION = re.compile(r"^(\*|[a-z0-9-]+:\*)$", re.IGNORECASE)


def is_account_root_admin(stmt: dict) -> bool:
    """The default KMS key policy statement: the key's own account administers it via IAM."""
    return (
        stmt.get("Effect") == "Allow"
        and stmt.get("Principal") == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
        and as_list(stmt["Action"]) == ["kms:*"]
        and "Condition" not in stmt
    )


def test_no_wildcard_actions_anywhere(template):
    for name, kind, doc in all_policy_documents(template):
        for stmt, _ in statements(doc):
            assert "NotAction" not in stmt, f"{name}: NotAction"
            assert "NotResource" not in stmt, f"{name}: NotResource"
            if kind == "key" and is_account_root_admin(stmt):
                # A key policy must let its account manage the key (AWS's default key policy);
                # who may *use* the key is then decided by IAM policies, pinned above.
                continue
            for action in as_list(stmt["Action"]):
                assert not WILDCARD_ACTION.match(action), f"{name}: wildcard action {action}"


def test_resource_star_only_for_ecr_authorization_token(template):
    for name, kind, doc in all_policy_documents(template):
        if kind in ("trust",):
            continue
        for stmt, _ in statements(doc):
            resources = as_list(stmt.get("Resource", []))
            if kind == "key":
                # In a key policy, "*" is the key itself; nothing else is allowed there.
                assert resources == ["*"], f"{name}: key policy resource {resources}"
                continue
            if "*" in resources:
                assert as_list(stmt["Action"]) == ["ecr:GetAuthorizationToken"] or (
                    name == "TaskRole"
                    and set(as_list(stmt["Action"])) in (ACCOUNT_WIDE_READS, {"organizations:ListAccounts"})
                ), f"{name}: Resource '*' for {stmt['Action']}"


def test_wildcard_principal_only_denies(template):
    for name, _kind, doc in all_policy_documents(template):
        for stmt, _ in statements(doc):
            principal = stmt.get("Principal")
            if principal in ("*", {"AWS": "*"}):
                assert stmt["Effect"] == "Deny", f"{name}: Allow to any principal"


def test_key_policy_grants_only_account_and_cloudwatch(template):
    key = resource(template, "AlertTopicKey", "AWS::KMS::Key")["Properties"]
    assert key["EnableKeyRotation"] is True
    principals = []
    for stmt, _ in statements(key["KeyPolicy"]):
        assert stmt["Effect"] == "Allow"
        if is_account_root_admin(stmt):
            principals.append("account")
            continue
        assert stmt["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
        assert sorted(as_list(stmt["Action"])) == ["kms:Decrypt", "kms:GenerateDataKey"]
        principals.append("cloudwatch")
    assert sorted(principals) == ["account", "cloudwatch"]


# ---- queue ----------------------------------------------------------------------------------


def queue_policy_statements(template: dict) -> list[tuple[dict, str | None]]:
    policy = resource(template, "QueuePolicy", "AWS::SQS::QueuePolicy")["Properties"]
    assert policy["Queues"] == [{"Ref": "Queue"}]
    return statements(policy["PolicyDocument"])


def test_queue_accepts_only_the_trail_bucket_notifications(template):
    allows = {g: s for s, g in queue_policy_statements(template) if s["Effect"] == "Allow"}
    assert set(allows) == {"UseS3EventNotification", "UseEventBridge", None}

    fast = allows[None]
    assert fast["Principal"] == {"Service": "events.amazonaws.com"}
    assert as_list(fast["Action"]) == ["sqs:SendMessage"]
    assert fast["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["CloudTrailEventsRule", "Arn"]}},
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
    }

    s3 = allows["UseS3EventNotification"]
    assert s3["Principal"] == {"Service": "s3.amazonaws.com"}
    assert as_list(s3["Action"]) == ["sqs:SendMessage"]
    assert s3["Resource"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    assert s3["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"Fn::Sub": "arn:${AWS::Partition}:s3:::${TrailBucketName}"}},
        "StringEquals": {
            "aws:SourceAccount": {
                "Fn::If": ["HasBucketAccountId", {"Ref": "BucketAccountId"}, {"Ref": "AWS::AccountId"}]
            }
        },
    }

    events = allows["UseEventBridge"]
    assert events["Principal"] == {"Service": "events.amazonaws.com"}
    assert as_list(events["Action"]) == ["sqs:SendMessage"]
    assert events["Resource"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    assert events["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["TrailObjectCreatedRule", "Arn"]}},
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
    }
    rule = resource(template, "TrailObjectCreatedRule", "AWS::Events::Rule")
    assert rule["Condition"] == "UseEventBridge"
    assert rule["Properties"]["EventPattern"]["source"] == ["aws.s3"]
    assert rule["Properties"]["EventPattern"]["detail-type"] == ["Object Created"]
    assert rule["Properties"]["EventPattern"]["detail"]["bucket"]["name"] == [{"Ref": "TrailBucketName"}]


def test_the_two_notification_modes_exclude_each_other(template):
    conditions = template["Conditions"]
    assert conditions["UseEventBridge"] == {"Fn::Equals": [{"Ref": "NotificationMode"}, "EventBridge"]}
    assert conditions["UseS3EventNotification"] == {
        "Fn::Equals": [{"Ref": "NotificationMode"}, "S3EventNotification"]
    }
    assert template["Parameters"]["BucketAccountId"]["Default"] == ""


def test_dead_letter_queue_settings(template):
    queue = resource(template, "Queue", "AWS::SQS::Queue")["Properties"]
    dlq = resource(template, "DeadLetterQueue", "AWS::SQS::Queue")["Properties"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
        "maxReceiveCount": 10,
    }
    assert dlq["MessageRetentionPeriod"] == 1209600  # 14 days
    # Messages keep their original enqueue time in the DLQ, so it must outlive the queue.
    assert queue["MessageRetentionPeriod"] < dlq["MessageRetentionPeriod"]
    for props in (queue, dlq):
        assert props["SqsManagedSseEnabled"] is True


def test_state_table_is_on_demand_encrypted_and_expires_items(template):
    table = resource(template, "StateTable", "AWS::DynamoDB::Table")["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]} == {
        "pk": "S",
        "sk": "S",
    }
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["SSESpecification"]["SSEEnabled"] is True
    env = environment(task_container(template))
    assert env["TRAILWARDEN_STATE_TABLE"] == {"Ref": "StateTable"}


def test_grace_period_fits_the_stop_timeout(template):
    container = task_container(template)
    env = environment(container)
    assert int(env["TRAILWARDEN_STOP_TIMEOUT_SECS"]) == container["StopTimeout"]
    assert int(env["TRAILWARDEN_SHUTDOWN_GRACE_SECS"]) + 2 <= container["StopTimeout"]


def test_visibility_timeout_matches_the_daemon_setting(template):
    queue = resource(template, "Queue", "AWS::SQS::Queue")["Properties"]
    env = environment(task_container(template))
    assert queue["VisibilityTimeout"] == 300
    assert env["TRAILWARDEN_VISIBILITY_TIMEOUT_SECS"] == "300"


# ---- topic ----------------------------------------------------------------------------------


def test_topics_are_encrypted_and_alarms_report_to_the_operations_topic(template):
    for name in ("AlertTopic", "OperationsTopic"):
        topic = resource(template, name, "AWS::SNS::Topic")["Properties"]
        assert topic["KmsMasterKeyId"] == {"Ref": "AlertTopicKey"}, name
    people = 0
    for name, alarm in resources_of_type(template, "AWS::CloudWatch::Alarm").items():
        props = alarm["Properties"]
        if alarm.get("Condition") == "AutoScalingEnabled":
            continue  # scaling alarms drive scaling policies, not people
        people += 1
        # The daemon's own health pages whoever runs it, never the security pager.
        assert props["AlarmActions"] == [{"Ref": "OperationsTopic"}], name
        assert props["OKActions"] == [{"Ref": "OperationsTopic"}], name
    assert people >= 7
    policy = resource(template, "OperationsTopicPolicy", "AWS::SNS::TopicPolicy")["Properties"]
    sids = {s["Sid"] for s in policy["PolicyDocument"]["Statement"]}
    assert sids == {"CloudWatchAlarmsInThisAccount", "DenyInsecureTransport"}


# The metric names the daemon writes as EMF lines (src/telemetry/emf.rs, METRICS).
EMF_SOURCE = REPO / "src" / "telemetry" / "emf.rs"


def emitted_metrics() -> set[str]:
    text = EMF_SOURCE.read_text()
    table = text[text.index("pub const METRICS") : text.index("];", text.index("pub const METRICS"))]
    return set(re.findall(r'\(\s*"([A-Za-z]+)",\s*"(?:Seconds|Count)"', table))


def test_the_task_writes_emf_metrics_into_the_stacks_namespace(template):
    env = environment(task_container(template))
    assert env["TRAILWARDEN_METRICS_EMF_INTERVAL_SECS"] == "60"
    assert env["TRAILWARDEN_METRICS_NAMESPACE"] == {"Fn::Sub": "Trailwarden/${AWS::StackName}"}


@pytest.mark.parametrize(
    ("name", "metric", "statistic", "threshold"),
    [
        ("AlertLagAlarm", "AlertLagMaxSeconds", "Maximum", {"Ref": "AlertLagAlarmSeconds"}),
        ("PublishFailuresAlarm", "PublishFailures", "Sum", 0),
        ("OutputBehindAlarm", "OutputBehindSeconds", "Maximum", 600),
        ("MessagesHeldAlarm", "MessagesHeld", "Minimum", 0),
    ],
)
def test_health_alarms_read_metrics_the_daemon_emits(template, name, metric, statistic, threshold):
    alarm = resource(template, name, "AWS::CloudWatch::Alarm")["Properties"]
    assert metric in emitted_metrics(), f"{metric} is not written by the daemon"
    assert alarm["Namespace"] == {"Fn::Sub": "Trailwarden/${AWS::StackName}"}
    assert alarm["MetricName"] == metric
    assert "Dimensions" not in alarm, "the EMF lines carry no dimensions"
    assert alarm["Statistic"] == statistic
    assert alarm["Threshold"] == threshold
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    # No page, no failure, nothing held: silence is healthy.
    assert alarm["TreatMissingData"] == "notBreaching"


def test_dashboard_shows_only_metrics_the_daemon_emits(template):
    body = resource(template, "Dashboard", "AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"]
    text, variables = body["Fn::Sub"]
    assert variables["Namespace"] == {"Fn::Sub": "Trailwarden/${AWS::StackName}"}
    # Substitute the variables with stand-ins: the body must then be JSON.
    filled = re.sub(r"\$\{[^}]+\}", "x", text)
    widgets = json.loads(filled)["widgets"]
    own = {m[1] for w in widgets for m in w["properties"]["metrics"] if m[0] == "x"}
    assert own and own <= emitted_metrics(), own - emitted_metrics()


def test_operations_email_is_optional(template):
    sub = resource(template, "OperationsEmailSubscription", "AWS::SNS::Subscription")
    assert sub["Condition"] == "HasOperationsEmail"
    assert sub["Properties"]["TopicArn"] == {"Ref": "OperationsTopic"}
    assert template["Parameters"]["OperationsEmail"]["Default"] == ""


def test_dlq_alarm_watches_the_dead_letter_queue(template):
    alarm = resource(template, "DeadLetterQueueNotEmptyAlarm", "AWS::CloudWatch::Alarm")["Properties"]
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}
    ]
    assert alarm["Threshold"] == 0
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"


# ---- container ------------------------------------------------------------------------------


def test_container_hardening(template):
    container = task_container(template)
    assert container["ReadonlyRootFilesystem"] is True
    assert container["StopTimeout"] == 30
    assert container["HealthCheck"]["Command"] == ["CMD", *HEALTHCHECK]
    assert container["Privileged"] is False
    assert container["User"] not in ("0", "root", "0:0")
    assert container["LinuxParameters"]["Capabilities"]["Drop"] == ["ALL"]
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    env = environment(container)
    # The drain must finish before ECS sends SIGKILL.
    assert int(env["TRAILWARDEN_SHUTDOWN_GRACE_SECS"]) < container["StopTimeout"]


def test_no_secrets_in_environment(template):
    container = task_container(template)
    assert "Secrets" not in container
    for name in environment(container):
        assert not re.search(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL", name), name


def test_dockerfile_matches_task_definition():
    text = DOCKERFILE_PATH.read_text()
    # Join continuation lines, then read the final stage's instructions.
    lines = re.sub(r"\\\n\s*", " ", text).splitlines()
    instructions = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    entrypoint = [i for i in instructions if i.startswith("ENTRYPOINT ")]
    healthcheck = [i for i in instructions if i.startswith("HEALTHCHECK ")]
    user = [i for i in instructions if i.startswith("USER ")]
    assert entrypoint and json.loads(entrypoint[-1].split(" ", 1)[1]) == ["/usr/local/bin/trailwarden", "run"]
    assert healthcheck and json.loads(healthcheck[-1].split(" CMD ", 1)[1]) == HEALTHCHECK
    assert user and user[-1].split()[1].split(":")[0] not in ("0", "root")


def test_environment_names_are_daemon_settings(template):
    """The daemon refuses unknown TRAILWARDEN_* variables, so a typo here stops every task."""
    config_rs = REPO / "src" / "config.rs"
    keys = set(re.findall(r'\("([a-z_]+)", Kind::', config_rs.read_text()))
    assert keys, "src/config.rs must list its settings as (\"key\", Kind::...) pairs"
    for name in environment(task_container(template)):
        if name.startswith("TRAILWARDEN_"):
            assert name.removeprefix("TRAILWARDEN_").lower() in keys, f"{name} is not a daemon setting"


# ---- lint exceptions ------------------------------------------------------------------------


def test_every_lint_exception_gives_its_reason(template):
    for name, res in template["Resources"].items():
        for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert len(skip.get("comment", "").strip()) >= 20, f"{name}: checkov skip {skip['id']} without a reason"
    lines = DOCKERFILE_PATH.read_text().splitlines()
    for number, line in enumerate(lines):
        if "checkov:skip=" in line:
            reason = line.split("checkov:skip=", 1)[1].partition(":")[2]
            assert len(reason.strip()) >= 10, f"Dockerfile:{number + 1}: checkov skip without a reason"
        if "hadolint ignore=" in line:
            previous = lines[number - 1].strip() if number else ""
            assert previous.startswith("#") and "hadolint" not in previous, (
                f"Dockerfile:{number + 1}: hadolint ignore without a reason on the line above"
            )


# ---- the fast path --------------------------------------------------------------------------


def matches(pattern, event) -> bool:
    """EventBridge matching for the pattern features the templates use: lists of exact values,
    prefix, suffix, wildcard and exists matchers, nested objects and $or."""
    for key, want in pattern.items():
        if key == "$or":
            if not any(matches(alternative, event) for alternative in want):
                return False
            continue
        have = event.get(key) if isinstance(event, dict) else None
        if isinstance(want, dict):
            if not isinstance(have, dict) or not matches(want, have):
                return False
            continue
        def one(w):
            if isinstance(w, dict):
                if "exists" in w:
                    return (key in event) == w["exists"]
                if "wildcard" in w:
                    return isinstance(have, str) and fnmatch.fnmatchcase(have, w["wildcard"])
                if "prefix" in w:
                    return isinstance(have, str) and have.startswith(w["prefix"])
                if "suffix" in w:
                    return isinstance(have, str) and have.endswith(w["suffix"])
                raise AssertionError(f"matcher not understood here: {w}")
            return have == w
        if not any(one(w) for w in want):
            return False
    return True


def rule_calls() -> set[tuple[str, str]]:
    """(eventSource, eventName) of every selection of the builtin rules that names both."""
    import yaml

    calls = set()
    for path in sorted((REPO / "rules").glob("*.yml")):
        for doc in yaml.safe_load_all(path.read_text()):
            for selection in (doc or {}).get("detection", {}).values():
                if not isinstance(selection, dict):
                    continue
                # The rules match the service with |endswith (see tests/rules.rs).
                sources = selection.get("eventSource", selection.get("eventSource|endswith"))
                names = selection.get("eventName")
                if sources is None or names is None:
                    continue
                for source in as_list(sources):
                    for name in as_list(names):
                        calls.add((source, name))
    return calls


def cloudtrail_event(source: str, name: str, identity: str = "AssumedRole") -> dict:
    return {
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws." + source.removesuffix(".amazonaws.com"),
        "detail": {"eventSource": source, "eventName": name, "userIdentity": {"type": identity}},
    }


def test_fast_path_forwards_what_every_builtin_rule_fires_on(template):
    rule = resource(template, "CloudTrailEventsRule", "AWS::Events::Rule")["Properties"]
    pattern = rule["EventPattern"]
    calls = rule_calls()
    assert len(calls) > 140, "the rules name their calls"
    missing = sorted(c for c in calls if not matches(pattern, cloudtrail_event(*c)))
    assert not missing, f"calls the rules fire on that the fast path drops: {missing}"
    # Root, whatever it calls; denied calls; both sign-in spellings.
    assert matches(pattern, cloudtrail_event("ec2.amazonaws.com", "DescribeRegions", "Root"))
    denied = cloudtrail_event("ec2.amazonaws.com", "RunInstances")
    denied["detail"]["errorCode"] = "Client.UnauthorizedOperation"
    assert matches(pattern, denied)
    for detail_type in ("AWS Console Sign In via CloudTrail", "AWS Console Signin via CloudTrail"):
        event = cloudtrail_event("signin.amazonaws.com", "ConsoleLogin")
        event["detail-type"] = detail_type
        assert matches(pattern, event)
    # An instance profile's session, whatever it calls, unless through a VPC endpoint.
    stolen = cloudtrail_event("s3.amazonaws.com", "ListBuckets")
    stolen["detail"]["userIdentity"]["arn"] = (
        "arn:aws:sts::111122223333:assumed-role/web-app/i-0a1b2c3d4e5f60718"
    )
    assert matches(pattern, stolen)
    stolen["detail"]["vpcEndpointId"] = "vpce-0a1b2c3d"
    assert not matches(pattern, stolen)
    # Nothing else: a role's ordinary write is not forwarded.
    assert not matches(pattern, cloudtrail_event("ec2.amazonaws.com", "RunInstances"))
    assert not matches(pattern, cloudtrail_event("lambda.amazonaws.com", "UpdateFunctionCode"))
    # EventBridge takes patterns of at most 4096 characters.
    assert len(json.dumps(pattern, separators=(",", ":"))) <= 4096
    assert rule["Targets"] == [{"Id": "trailwarden-queue", "Arn": {"Fn::GetAtt": ["Queue", "Arn"]}}]
    assert rule["State"] == {
        "Fn::If": ["ForwardReadOnly", "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS", "ENABLED"]
    }
    assert template["Parameters"]["ForwardReadOnlyEvents"]["Default"] == "false"


def test_forwarding_template_uses_the_same_pattern_and_a_narrow_role(template, forward):
    central = resource(template, "CloudTrailEventsRule", "AWS::Events::Rule")["Properties"]
    rule = resource(forward, "ForwardRule", "AWS::Events::Rule")["Properties"]
    assert rule["EventPattern"] == central["EventPattern"]
    assert rule["State"] == central["State"]
    (target,) = rule["Targets"]
    assert target["RoleArn"] == {"Fn::GetAtt": ["ForwardRole", "Arn"]}
    bus = {
        "Fn::Sub": [
            "arn:${AWS::Partition}:events:${CentralRegion}:${Account}:event-bus/default",
            {"Account": {"Fn::If": ["HasCentralAccount", {"Ref": "CentralAccountId"}, {"Ref": "AWS::AccountId"}]}},
        ]
    }
    assert target["Arn"] == bus
    assert role_statements(forward, "ForwardRole") == [
        {"Effect": "Allow", "Action": ["events:PutEvents"], "Resource": bus, "Guard": None}
    ]
    trust = resource(forward, "ForwardRole", "AWS::IAM::Role")["Properties"]["AssumeRolePolicyDocument"]
    (stmt,) = as_list(trust["Statement"])
    assert stmt["Principal"] == {"Service": "events.amazonaws.com"}
    assert stmt["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_the_bus_accepts_forwarded_events_from_the_organization_only(template):
    policy = resource(template, "OrganizationForwardingPolicy", "AWS::Events::EventBusPolicy")
    assert policy["Condition"] == "HasForwardingOrganization"
    stmt = policy["Properties"]["Statement"]
    assert stmt["Action"] == "events:PutEvents"
    assert stmt["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": {"Ref": "ForwardingOrganizationId"}}}
