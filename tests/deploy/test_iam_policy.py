"""Pins the permissions and safety settings of deploy/template.yaml.

The template is read with cfn-lint's own YAML decoder, which understands the short
intrinsic-function tags (!Sub, !GetAtt, !If ...). Each expected policy is written out in full,
so widening a permission is a deliberate change to this file as well as to the template.
`Stack` resolves the template for one choice of parameters (conditions, !If, !Sub, !Join), so
each choice of outputs is also checked as CloudFormation would deploy it: the role's grants in
effect and the TRAILWARDEN_OUTPUTS the task receives.
"""

from __future__ import annotations

import fnmatch
import itertools
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


# ---- resolving the template for one choice of parameters -------------------------------------

# Pseudo parameters, and stand-ins for the required parameters that have no default.
PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "111122223333",
    "AWS::StackName": "trailwarden",
    "AWS::URLSuffix": "amazonaws.com",
}
REQUIRED = {
    "TrailBucketName": "my-cloudtrail-bucket",
    "AlertEmail": "secops@example.com",
    "ContainerImage": "111122223333.dkr.ecr.eu-west-1.amazonaws.com/trailwarden:1",
    "SubnetIds": "subnet-0aaaaaaaaaaaaaaaa",
    "SecurityGroupId": "sg-0123456789abcdef0",
}
NOTHING = object()  # what AWS::NoValue resolves to: the item or property is left out


class Stack:
    """The template with its parameters set: conditions evaluated and the intrinsic functions
    the task definition and the role use resolved (resources stay as `<Name>` stand-ins)."""

    def __init__(self, template: dict, **chosen: str):
        self.template = template
        unknown = set(chosen) - set(template["Parameters"])
        assert not unknown, f"not parameters of the template: {unknown}"
        self.params = {
            name: chosen.get(name, spec.get("Default", REQUIRED.get(name)))
            for name, spec in template["Parameters"].items()
        }

    def condition(self, name: str) -> bool:
        return self.value(self.template["Conditions"][name])

    def guard(self, guard: str | None) -> bool:
        """Whether a statement guarded as `statements()` reports it is in effect."""
        if guard is None:
            return True
        return not self.condition(guard[1:]) if guard.startswith("!") else self.condition(guard)

    def ref(self, name: str):
        if name == "AWS::NoValue":
            return NOTHING
        if name in self.params:
            return self.params[name]
        if name in PSEUDO:
            return PSEUDO[name]
        assert name in self.template["Resources"], f"Ref to unknown {name}"
        return f"<{name}>"

    def sub(self, text: str, variables: dict) -> str:
        def one(match):
            name = match.group(1)
            if name in variables:
                return self.value(variables[name])
            if "." in name:
                return f"<{name}>"
            return self.ref(name)

        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def value(self, node):
        if isinstance(node, list):
            return [v for v in (self.value(i) for i in node) if v is not NOTHING]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (fn, arg), = node.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Condition":
                return self.condition(arg)
            if fn == "Fn::If":
                cond, when_true, when_false = arg
                return self.value(when_true if self.condition(cond) else when_false)
            if fn == "Fn::Equals":
                left, right = (self.value(a) for a in arg)
                return left == right
            if fn == "Fn::Not":
                return not self.value(arg[0])
            if fn == "Fn::And":
                return all(self.value(a) for a in arg)
            if fn == "Fn::Or":
                return any(self.value(a) for a in arg)
            if fn == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                return self.sub(text, variables)
            if fn == "Fn::Join":
                delimiter, items = arg
                return delimiter.join(self.value(items))
            if fn == "Fn::GetAtt":
                return f"<{'.'.join(arg) if isinstance(arg, list) else arg}>"
        out = {k: self.value(v) for k, v in node.items()}
        return {k: v for k, v in out.items() if v is not NOTHING}

    def environment(self) -> dict:
        entries = self.value(task_container(self.template)["Environment"])
        return {e["Name"]: e["Value"] for e in entries}

    def task_role(self) -> list[dict]:
        """The task role's statements in effect, resolved, without Sids, actions sorted."""
        role = resource(self.template, "TaskRole", "AWS::IAM::Role")["Properties"]
        out = []
        for stmt, guard in statements(role["Policies"][0]["PolicyDocument"]):
            if self.guard(guard):
                norm = self.value({k: v for k, v in stmt.items() if k != "Sid"})
                norm["Action"] = sorted(as_list(norm["Action"]))
                out.append(norm)
        return out

    def rejected_by(self) -> list[str]:
        """The template Rules whose assertions this choice of parameters fails."""
        failed = []
        for name, rule in self.template.get("Rules", {}).items():
            if "RuleCondition" in rule and not self.value(rule["RuleCondition"]):
                continue
            if not all(self.value(a["Assert"]) for a in rule["Assertions"]):
                failed.append(name)
        return failed


# The outputs besides the alert topic, as a deployer chooses them.
CHATBOT_TOPIC = "arn:aws:sns:eu-west-1:111122223333:trailwarden-chat"
CHATBOT_KEY = "arn:aws:kms:eu-west-1:111122223333:key/0b6c3c3e-1111-4222-8333-944445555666"
PAGERDUTY_SECRET = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:trailwarden/pagerduty-AbCdEf"
PAGERDUTY_PARAMETER = "arn:aws:ssm:eu-west-1:111122223333:parameter/trailwarden/pagerduty"
PAGERDUTY_KEY = "arn:aws:kms:eu-west-1:111122223333:key/1c7d4d4f-2222-4333-9444-a55556666777"
CHATBOT = {"": {}, "chatbot": {"ChatbotTopicArn": CHATBOT_TOPIC}}
PAGERDUTY = {
    "": {},
    "pagerduty-secret": {"PagerDutyRoutingKeySecretArn": PAGERDUTY_SECRET},
    "pagerduty-parameter": {"PagerDutyRoutingKeyParameterArn": PAGERDUTY_PARAMETER},
}
SECURITY_HUB = {"": {}, "securityhub": {"SecurityHub": "true"}}
OUTPUT_CHOICES = {
    "+".join(n for n in (c, p, s) if n) or "none": {**CHATBOT[c], **PAGERDUTY[p], **SECURITY_HUB[s]}
    for c, p, s in itertools.product(CHATBOT, PAGERDUTY, SECURITY_HUB)
}


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
        *OUTPUT_STATEMENTS,
    ]
    assert canonical(role_statements(template, "TaskRole")) == canonical(expected)


# Each output's calls, granted only when it is chosen (src/config.rs, OutputKind).
OUTPUT_STATEMENTS = [
    # chatbot: publish to its topic, and the start-up check that the topic exists.
    {
        "Effect": "Allow",
        "Action": ["sns:GetTopicAttributes", "sns:Publish"],
        "Resource": {"Ref": "ChatbotTopicArn"},
        "Guard": "HasChatbot",
    },
    {
        "Effect": "Allow",
        "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
        "Resource": {"Ref": "ChatbotTopicKmsKeyArn"},
        "Condition": {"StringEquals": {"kms:ViaService": {"Fn::Sub": "sns.${AWS::Region}.amazonaws.com"}}},
        "Guard": "HasChatbotTopicKey",
    },
    # pagerduty: read the routing key from its secret or its parameter (and its customer
    # managed key, through that service only).
    {
        "Effect": "Allow",
        "Action": ["secretsmanager:GetSecretValue"],
        "Resource": {"Ref": "PagerDutyRoutingKeySecretArn"},
        "Guard": "HasPagerDutySecret",
    },
    {
        "Effect": "Allow",
        "Action": ["ssm:GetParameter"],
        "Resource": {"Ref": "PagerDutyRoutingKeyParameterArn"},
        "Guard": "HasPagerDutyParameter",
    },
    {
        "Effect": "Allow",
        "Action": ["kms:Decrypt"],
        "Resource": {"Ref": "PagerDutyRoutingKeyKmsKeyArn"},
        "Condition": {
            "StringEquals": {
                "kms:ViaService": {
                    "Fn::If": [
                        "HasPagerDutySecret",
                        {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"},
                        {"Fn::Sub": "ssm.${AWS::Region}.amazonaws.com"},
                    ]
                }
            }
        },
        "Guard": "HasPagerDutyKey",
    },
    # securityhub: import findings under the account's default product; DescribeHub is the
    # start-up check (sts:GetCallerIdentity needs no permission).
    {
        "Effect": "Allow",
        "Action": ["securityhub:BatchImportFindings"],
        "Resource": {
            "Fn::Sub": "arn:${AWS::Partition}:securityhub:${AWS::Region}:${AWS::AccountId}:product/${AWS::AccountId}/default"
        },
        "Guard": "UseSecurityHub",
    },
    {
        "Effect": "Allow",
        "Action": ["securityhub:DescribeHub"],
        "Resource": {"Fn::Sub": "arn:${AWS::Partition}:securityhub:${AWS::Region}:${AWS::AccountId}:hub/default"},
        "Guard": "UseSecurityHub",
    },
]


def expected_output_grants(chosen: dict) -> list[dict]:
    """What the task role must add, resolved, for this choice of outputs and keys."""
    region, account = PSEUDO["AWS::Region"], PSEUDO["AWS::AccountId"]
    out = []
    if "ChatbotTopicArn" in chosen:
        out.append({"Effect": "Allow", "Action": ["sns:GetTopicAttributes", "sns:Publish"], "Resource": CHATBOT_TOPIC})
        if "ChatbotTopicKmsKeyArn" in chosen:
            out.append(
                {
                    "Effect": "Allow",
                    "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                    "Resource": CHATBOT_KEY,
                    "Condition": {"StringEquals": {"kms:ViaService": f"sns.{region}.amazonaws.com"}},
                }
            )
    service = None
    if "PagerDutyRoutingKeySecretArn" in chosen:
        service = "secretsmanager"
        out.append({"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"], "Resource": PAGERDUTY_SECRET})
    if "PagerDutyRoutingKeyParameterArn" in chosen:
        service = "ssm"
        out.append({"Effect": "Allow", "Action": ["ssm:GetParameter"], "Resource": PAGERDUTY_PARAMETER})
    if service and "PagerDutyRoutingKeyKmsKeyArn" in chosen:
        out.append(
            {
                "Effect": "Allow",
                "Action": ["kms:Decrypt"],
                "Resource": PAGERDUTY_KEY,
                "Condition": {"StringEquals": {"kms:ViaService": f"{service}.{region}.amazonaws.com"}},
            }
        )
    if chosen.get("SecurityHub") == "true":
        out.append(
            {
                "Effect": "Allow",
                "Action": ["securityhub:BatchImportFindings"],
                "Resource": f"arn:aws:securityhub:{region}:{account}:product/{account}/default",
            }
        )
        out.append(
            {
                "Effect": "Allow",
                "Action": ["securityhub:DescribeHub"],
                "Resource": f"arn:aws:securityhub:{region}:{account}:hub/default",
            }
        )
    return out


def test_nothing_output_specific_is_granted_unless_an_output_is_chosen(template):
    for name in ("ChatbotTopicArn", "PagerDutyRoutingKeySecretArn", "PagerDutyRoutingKeyParameterArn"):
        assert template["Parameters"][name]["Default"] == "", name
    assert template["Parameters"]["SecurityHub"]["Default"] == "false"
    stack = Stack(template)
    assert not stack.condition("HasExtraOutputs")
    # With the defaults only the unguarded statements are in effect: no output's grant.
    unguarded = [s for s in role_statements(template, "TaskRole") if s["Guard"] is None]
    baseline = [stack.value({k: v for k, v in s.items() if k != "Guard"}) for s in unguarded]
    assert canonical(stack.task_role()) == canonical(baseline)
    granted = {a for s in stack.task_role() for a in s["Action"]}
    assert not granted & {"secretsmanager:GetSecretValue", "ssm:GetParameter", "securityhub:BatchImportFindings"}
    assert "TRAILWARDEN_OUTPUTS" not in stack.environment()


@pytest.mark.parametrize(
    "keys",
    [{}, {"ChatbotTopicKmsKeyArn": CHATBOT_KEY, "PagerDutyRoutingKeyKmsKeyArn": PAGERDUTY_KEY}],
    ids=["aws-managed-keys", "customer-managed-keys"],
)
@pytest.mark.parametrize("choice", OUTPUT_CHOICES)
def test_each_chosen_output_gets_exactly_its_calls(template, choice, keys):
    chosen = dict(OUTPUT_CHOICES[choice])
    # A key is given only with what it encrypts (the template's Rules refuse it otherwise).
    if "ChatbotTopicArn" in chosen and "ChatbotTopicKmsKeyArn" in keys:
        chosen["ChatbotTopicKmsKeyArn"] = keys["ChatbotTopicKmsKeyArn"]
    if any(k.startswith("PagerDutyRoutingKey") for k in chosen) and "PagerDutyRoutingKeyKmsKeyArn" in keys:
        chosen["PagerDutyRoutingKeyKmsKeyArn"] = keys["PagerDutyRoutingKeyKmsKeyArn"]
    stack = Stack(template, **chosen)
    assert stack.rejected_by() == []
    baseline = Stack(template).task_role()
    in_effect = stack.task_role()
    assert all(s in in_effect for s in baseline), "an output takes nothing away"
    added = [s for s in in_effect if s not in baseline]
    assert canonical(added) == canonical(expected_output_grants(chosen))


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


def test_output_behind_alarm_covers_every_output(template):
    """OutputBehindSeconds is the age of the oldest delivery pending across outputs
    (src/telemetry/metrics.rs, output_behind_secs); the alarm says so and where to look."""
    description = resource(template, "OutputBehindAlarm", "AWS::CloudWatch::Alarm")["Properties"][
        "AlarmDescription"
    ]
    for words in ("alert topic", "Chatbot", "PagerDuty", "Security Hub", "pending", "/healthz"):
        assert words in description, words
    metrics_rs = (REPO / "src" / "telemetry" / "metrics.rs").read_text()
    assert '"output_oldest_pending_seconds"' in metrics_rs
    assert "trailwarden_output_oldest_pending_seconds{output}" in description


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


# A PagerDuty integration's routing key: 32 hexadecimal characters.
ROUTING_KEY = "0123456789abcdef0123456789abcdef"


def test_the_pagerduty_routing_key_is_never_in_the_environment(template):
    """The task is given where the key is kept (an ARN), and reads the key itself at run
    time with its role: the key is in no parameter, no environment variable, and not injected
    through ECS secrets (which would put it in the task's environment)."""
    params = template["Parameters"]
    assert "Secrets" not in task_container(template)
    for name, service in (
        ("PagerDutyRoutingKeySecretArn", "secretsmanager"),
        ("PagerDutyRoutingKeyParameterArn", "ssm"),
    ):
        pattern = params[name]["AllowedPattern"]
        assert not re.fullmatch(pattern, ROUTING_KEY), f"{name} would take the key itself"
        stack = Stack(template, **{name: {"secretsmanager": PAGERDUTY_SECRET, "ssm": PAGERDUTY_PARAMETER}[service]})
        env = stack.environment()
        (pagerduty,) = [o for o in json.loads(env["TRAILWARDEN_OUTPUTS"]) if o["kind"] == "pagerduty"]
        assert pagerduty["routing_key"].startswith(f"arn:aws:{service}:"), pagerduty
        for value in env.values():
            assert ROUTING_KEY not in str(value)
    # No parameter other than the two ARNs concerns the key.
    assert [n for n in params if "RoutingKey" in n and not n.endswith("KmsKeyArn")] == [
        "PagerDutyRoutingKeySecretArn",
        "PagerDutyRoutingKeyParameterArn",
    ]


def test_the_routing_key_is_kept_in_one_place_only(template):
    both = Stack(
        template,
        PagerDutyRoutingKeySecretArn=PAGERDUTY_SECRET,
        PagerDutyRoutingKeyParameterArn=PAGERDUTY_PARAMETER,
    )
    assert both.rejected_by() == ["OnePagerDutyRoutingKey"]
    assert Stack(template, PagerDutyRoutingKeyKmsKeyArn=PAGERDUTY_KEY).rejected_by() == [
        "PagerDutyKeyNeedsARoutingKey"
    ]
    assert Stack(template, ChatbotTopicKmsKeyArn=CHATBOT_KEY).rejected_by() == ["ChatbotKeyNeedsATopic"]
    for choice in OUTPUT_CHOICES.values():
        assert Stack(template, **choice).rejected_by() == []


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
    # Every output chosen: its tables name only fields the daemon's [[outputs]] takes (it
    # refuses unknown ones too).
    every = Stack(template, **OUTPUT_CHOICES["chatbot+pagerduty-secret+securityhub"]).environment()
    fields, _kinds, _levels = output_settings()
    for table in json.loads(every["TRAILWARDEN_OUTPUTS"]):
        assert set(table) <= fields, set(table) - fields


def rust_block(path: Path, opening: str) -> str:
    """The body of the Rust item that starts with `opening` (up to its closing brace)."""
    text = path.read_text()
    start = text.index(opening)
    return text[start : text.index("\n}", start)]


def output_settings() -> tuple[set[str], set[str], set[str]]:
    """The `[[outputs]]` fields (src/config.rs, OutputSettings), the kinds (OutputKind, in
    lower case as serde reads them) and the level words (src/finding/mod.rs, Level)."""
    config_rs = REPO / "src" / "config.rs"
    fields = set(re.findall(r"^\s+pub (\w+):", rust_block(config_rs, "pub struct OutputSettings {"), re.M))
    kinds = {k.lower() for k in re.findall(r"^\s{4}(\w+),", rust_block(config_rs, "pub enum OutputKind {"), re.M)}
    levels = {
        k.lower()
        for k in re.findall(r"^\s{4}(\w+),", rust_block(REPO / "src" / "finding" / "mod.rs", "pub enum Level {"), re.M)
    }
    assert {"name", "kind", "min_level", "topic_arn", "routing_key", "events_url"} <= fields, fields
    assert {"sns", "chatbot", "pagerduty", "securityhub"} <= kinds, kinds
    assert "critical" in levels, levels
    return fields, kinds, levels


@pytest.mark.parametrize("choice", OUTPUT_CHOICES)
def test_outputs_variable_is_the_chosen_outputs_as_the_daemon_reads_them(template, choice):
    chosen = OUTPUT_CHOICES[choice]
    env = Stack(template, **chosen).environment()
    if choice == "none":
        assert "TRAILWARDEN_OUTPUTS" not in env
        return
    outputs = json.loads(env["TRAILWARDEN_OUTPUTS"])  # what serde_json reads; no trailing commas
    assert isinstance(outputs, list)
    fields, kinds, levels = output_settings()
    names = [o["name"] for o in outputs]
    assert names == [n.removesuffix("-secret").removesuffix("-parameter") for n in choice.split("+")]
    # The daemon's checks (src/config.rs, output_problems): unique names of [A-Za-z0-9_-],
    # not "sns" (the alert topic's, TRAILWARDEN_TOPIC_ARN); each kind's own fields only.
    assert len(set(names)) == len(names) and "sns" not in names
    assert env["TRAILWARDEN_TOPIC_ARN"] == "<AlertTopic>"
    for table in outputs:
        assert set(table) <= fields, set(table) - fields
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", table["name"])
        assert table["kind"] in kinds
        assert table["min_level"] in levels
        kind = table["kind"]
        assert ("topic_arn" in table) == (kind in ("sns", "chatbot")), table
        assert ("routing_key" in table) == (kind == "pagerduty"), table
        assert ("events_url" in table) <= (kind == "pagerduty"), table
    by_kind = {o["kind"]: o for o in outputs}
    if "chatbot" in by_kind:
        assert by_kind["chatbot"] == {
            "name": "chatbot",
            "kind": "chatbot",
            "min_level": "medium",
            "topic_arn": CHATBOT_TOPIC,
        }
    if "pagerduty" in by_kind:
        key = chosen.get("PagerDutyRoutingKeySecretArn", chosen.get("PagerDutyRoutingKeyParameterArn"))
        assert by_kind["pagerduty"] == {
            "name": "pagerduty",
            "kind": "pagerduty",
            "min_level": "high",
            "routing_key": key,
            "events_url": "https://events.pagerduty.com/v2/enqueue",
        }
    if "securityhub" in by_kind:
        assert by_kind["securityhub"] == {"name": "securityhub", "kind": "securityhub", "min_level": "low"}


def test_output_parameters_cannot_break_the_json(template):
    """TRAILWARDEN_OUTPUTS is spliced together from parameter values: each one spliced in
    must be unable to hold a quote or a backslash."""
    value = task_container(template)["Environment"]
    (entry,) = [e["Fn::If"][1] for e in value if "Fn::If" in e and e["Fn::If"][1]["Name"] == "TRAILWARDEN_OUTPUTS"]
    text = json.dumps(entry["Value"])
    spliced = set(re.findall(r"\$\{(\w+)\}", text)) | set(re.findall(r'"Ref": "(\w+)"', text))
    params = template["Parameters"]
    spliced &= set(params)
    assert {"ChatbotTopicArn", "ChatbotMinLevel", "PagerDutyMinLevel", "PagerDutyEventsUrl"} <= spliced
    samples = {
        "ChatbotTopicArn": CHATBOT_TOPIC,
        "PagerDutyRoutingKeySecretArn": PAGERDUTY_SECRET,
        "PagerDutyRoutingKeyParameterArn": PAGERDUTY_PARAMETER,
    }
    for name in spliced:
        spec = params[name]
        if "AllowedValues" in spec:
            assert all('"' not in v and "\\" not in v for v in spec["AllowedValues"]), name
            continue
        pattern, sample = spec["AllowedPattern"], samples[name]
        assert re.fullmatch(pattern, sample), (name, sample)
        for bad in ('"', "\\"):
            for at in range(len(sample) + 1):
                assert not re.fullmatch(pattern, sample[:at] + bad + sample[at:]), (name, bad, at)


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
