#!/usr/bin/env python3
"""Generates the example CloudTrail log tree under examples/cloudtrail/.

Deterministic: a fixed random seed and gzip mtime 0, so re-running rewrites identical files
(given the same zlib). Run from anywhere: `python3 examples/make_examples.py`.

The tree follows CloudTrail's S3 layout (AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/...)
with compact `{"Records":[...]}` bodies, plus one CloudTrail-Digest file, which holds no Records.
Addresses and account ids are the documentation ranges (198.51.100.0/24, 203.0.113.0/24,
111122223333).
"""
import gzip
import hashlib
import json
import random
import shutil
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent / "cloudtrail"
ACCT = "111122223333"
BUCKET = "aws-cloudtrail-logs-111122223333-3f1a9c2e"
TRAIL = "management-events"
CORP_IP = "198.51.100.10"      # the company's egress address
ATTACKER_IP = "203.0.113.77"   # guesses svc-reports' password
ODD_IP = "203.0.113.99"        # where the root sign-in comes from

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")
CLI = ("aws-cli/2.22.4 md/awscrt#0.23.4 ua/2.0 os/linux#6.8.0-1019-aws md/arch#x86_64 "
       "lang/python#3.12.6 md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe")
BOTO = "Boto3/1.35.68 md/Botocore#1.35.68 ua/2.0 os/linux#5.10.228-219.884.amzn2.x86_64 md/arch#x86_64 lang/python#3.12.7 md/pyimpl#CPython exec-env/AWS_Lambda_python3.12 cfg/retry-mode#legacy Botocore/1.35.68"
CONSOLE = "AWS Internal"

rng = random.Random(20261120)


def new_uuid():
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def alnum(n, alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"):
    return "".join(rng.choice(alphabet) for _ in range(n))


def key_id(prefix="ASIA"):
    return prefix + alnum(16)


# ---------------------------------------------------------------------------------- identities

def role(name, session, created, path="", mfa="false"):
    rid = "AROA" + alnum(17)
    return {"type": "AssumedRole", "principalId": f"{rid}:{session}",
            "arn": f"arn:aws:sts::{ACCT}:assumed-role/{name}/{session}", "accountId": ACCT,
            "accessKeyId": key_id(),
            "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": rid,
                                                 "arn": f"arn:aws:iam::{ACCT}:role/{path}{name}",
                                                 "accountId": ACCT, "userName": name},
                               "attributes": {"creationDate": created, "mfaAuthenticated": mfa}}}


def sso(permission_set, user, created):
    name = f"AWSReservedSSO_{permission_set}_{rng.getrandbits(64):016x}"
    return role(name, user, created, path="aws-reserved/sso.amazonaws.com/")


def federated(name, created):
    return {"type": "FederatedUser", "principalId": f"{ACCT}:{name}",
            "arn": f"arn:aws:sts::{ACCT}:federated-user/{name}", "accountId": ACCT,
            "accessKeyId": key_id(),
            "sessionContext": {"sessionIssuer": {"type": "IAMUser", "principalId": "AIDA" + alnum(17),
                                                 "arn": f"arn:aws:iam::{ACCT}:user/federation-broker",
                                                 "accountId": ACCT, "userName": "federation-broker"},
                               "webIdFederationData": {},
                               "attributes": {"creationDate": created, "mfaAuthenticated": "false"}}}


SVC_REPORTS_ID = "AIDA" + alnum(17)


def svc_reports(key=None, created=None):
    u = {"type": "IAMUser", "principalId": SVC_REPORTS_ID, "arn": f"arn:aws:iam::{ACCT}:user/svc-reports",
         "accountId": ACCT, "userName": "svc-reports"}
    if key:
        u["accessKeyId"] = key
    if created:
        u["sessionContext"] = {"attributes": {"creationDate": created, "mfaAuthenticated": "false"}}
    return u


def root(key=None, created=None):
    u = {"type": "Root", "principalId": ACCT, "arn": f"arn:aws:iam::{ACCT}:root", "accountId": ACCT}
    if key:
        u["accessKeyId"] = key
    if created:
        u["sessionContext"] = {"attributes": {"creationDate": created, "mfaAuthenticated": "false"}}
    return u


# ---------------------------------------------------------------------------------- records

def api(ident, source, name, time, region, ip=CORP_IP, ua=CLI, req=None, resp=None, error=None,
        read_only=False, event_type="AwsApiCall", **extra):
    rec = {"eventVersion": "1.10", "userIdentity": ident, "eventTime": time, "eventSource": source,
           "eventName": name, "awsRegion": region, "sourceIPAddress": ip, "userAgent": ua}
    if error:
        rec["errorCode"], rec["errorMessage"] = error
    rec.update({"requestParameters": req, "responseElements": resp, "requestID": new_uuid(),
                "eventID": new_uuid(), "readOnly": read_only, "eventType": event_type,
                "managementEvent": True, "recipientAccountId": ACCT, "eventCategory": "Management"})
    if event_type == "AwsApiCall" and not ip.endswith("amazonaws.com"):
        svc = source.split(".")[0]
        host = f"{svc}.amazonaws.com" if svc in ("iam", "sts") else f"{svc}.{region}.amazonaws.com"
        rec["tlsDetails"] = {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
                             "clientProvidedHostHeader": host}
    if ua == CONSOLE and event_type == "AwsApiCall":
        rec["sessionCredentialFromConsole"] = "true"
    rec.update(extra)
    return rec


def signin(ident, time, region="us-east-1", ip=CORP_IP, result="Success", mfa="No", error=None,
           name="ConsoleLogin", event_type="AwsConsoleSignIn", ua=CHROME):
    rec = {"eventVersion": "1.09", "userIdentity": ident, "eventTime": time,
           "eventSource": "signin.amazonaws.com", "eventName": name, "awsRegion": region,
           "sourceIPAddress": ip, "userAgent": ua}
    if error:
        rec["errorMessage"] = error
    rec["requestParameters"] = None
    if name == "ConsoleLogin":
        rec["responseElements"] = {"ConsoleLogin": result}
        rec["additionalEventData"] = {
            "LoginTo": "https://console.aws.amazon.com/console/home?hashArgs=%23&isauthcode=true&state=hashArgsFromTB_"
                       + region + "_" + alnum(16, "abcdef0123456789"),
            "MobileVersion": "No", "MFAUsed": mfa}
    else:
        rec["responseElements"] = None
        rec["additionalEventData"] = {"CredentialType": "PASSWORD"}
        rec["serviceEventDetails"] = {"CredentialType": "PASSWORD"}
    rec.update({"eventID": new_uuid(), "readOnly": False, "eventType": event_type, "managementEvent": True,
                "recipientAccountId": ACCT, "eventCategory": "Management",
                "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
                               "clientProvidedHostHeader": "signin.aws.amazon.com"}})
    return rec


def failed_login(time):
    ident = {"type": "IAMUser", "principalId": SVC_REPORTS_ID, "accountId": ACCT, "accessKeyId": "",
             "userName": "svc-reports"}
    return signin(ident, time, ip=ATTACKER_IP, result="Failure", error="Failed authentication",
                  ua=CHROME)


# ---------------------------------------------------------------------------------- noise

def noise(day, hhmm, region, count):
    """Benign background: read-only calls by roles, service calls and service events."""
    h, m = int(hhmm[:2]), int(hhmm[2:])
    start = h * 3600 + m * 60 - 300
    created = f"{day}T{h - 1:02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z"
    audit = role("SecurityAudit", "prowler-scan", created)
    inventory = role("ec2-inventory-lambda", "ec2-inventory-lambda", created)
    config = role("AWSServiceRoleForConfig", "AWSConfig-Describe", created,
                  path="aws-service-role/config.amazonaws.com/")
    config["invokedBy"] = "config.amazonaws.com"
    grafana = role("grafana-cloudwatch", "grafana", created)
    lambda_exec = role("orders-api-lambda", "orders-api", created)
    # IAM is global: its calls are logged in us-east-1 only.
    iam_makers = [
        lambda t: api(audit, "iam.amazonaws.com", "ListRoles", t, region, ip="198.51.100.14", read_only=True,
                      req={"maxItems": 100}),
        lambda t: api(audit, "iam.amazonaws.com", "GetAccountSummary", t, region, ip="198.51.100.14",
                      read_only=True),
    ]
    makers = [
        lambda t: api(audit, "cloudtrail.amazonaws.com", "DescribeTrails", t, region, ip="198.51.100.14",
                      read_only=True, req={"trailNameList": [], "includeShadowTrails": True}),
        lambda t: api(audit, "s3.amazonaws.com", "HeadBucket", t, region, ip="198.51.100.14",
                      read_only=True, error=("AccessDenied", "Access Denied"),
                      req={"bucketName": "partner-drop-444455556666", "Host": "partner-drop-444455556666.s3.amazonaws.com"}),
        lambda t: api(inventory, "ec2.amazonaws.com", "DescribeInstances", t, region, ip="198.51.100.31",
                      ua=BOTO, read_only=True, req={"instancesSet": {}, "filterSet": {}}),
        lambda t: api(inventory, "ec2.amazonaws.com", "DescribeVolumes", t, region, ip="198.51.100.31",
                      ua=BOTO, read_only=True, req={"volumeSet": {}, "filterSet": {}}),
        lambda t: api(config, "ec2.amazonaws.com", "DescribeSecurityGroups", t, region,
                      ip="config.amazonaws.com", ua="config.amazonaws.com", read_only=True,
                      req={"securityGroupSet": {}, "securityGroupIdSet": {}, "filterSet": {}}),
        lambda t: api(grafana, "monitoring.amazonaws.com", "GetMetricData", t, region, ip="198.51.100.52",
                      ua="aws-sdk-go-v2/1.32.5 os/linux lang/go#1.23.3", read_only=True,
                      req={"startTime": f"{day}T00:00:00Z", "endTime": t, "maxDatapoints": 1000}),
        lambda t: api({"type": "AWSService", "invokedBy": "lambda.amazonaws.com"}, "sts.amazonaws.com",
                      "AssumeRole", t, region, ip="lambda.amazonaws.com", ua="lambda.amazonaws.com",
                      read_only=True,
                      req={"roleArn": f"arn:aws:iam::{ACCT}:role/orders-api-lambda",
                           "roleSessionName": "orders-api"},
                      resp={"credentials": {"accessKeyId": key_id(), "sessionToken": "IQoJb3JpZ2luX2Vj" + alnum(48),
                                            "expiration": f"{day}T{h + 1:02d}:00:00Z"}},
                      resources=[{"accountId": ACCT, "type": "AWS::IAM::Role",
                                  "ARN": f"arn:aws:iam::{ACCT}:role/orders-api-lambda"}],
                      sharedEventID=new_uuid()),
        lambda t: api(lambda_exec, "kms.amazonaws.com", "Decrypt", t, region, ip="198.51.100.33", ua=BOTO,
                      read_only=True, req={"encryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
        lambda t: api(lambda_exec, "logs.amazonaws.com", "CreateLogStream", t, region,
                      ip="198.51.100.33", ua=BOTO,
                      req={"logGroupName": "/aws/lambda/orders-api", "logStreamName": f"{day.replace('-', '/')}/[$LATEST]{alnum(32, 'abcdef0123456789')}"}),
    ]
    if region == "us-east-1":
        makers += iam_makers
    out = []
    for _ in range(count):
        s = start + rng.randrange(300)
        t = f"{day}T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z"
        out.append(rng.choice(makers)(t))
    return out


def kms_rotation(time, region):
    key = f"arn:aws:kms:{region}:{ACCT}:key/{new_uuid()}"
    return api({"accountId": ACCT, "invokedBy": "AWS Internal"}, "kms.amazonaws.com", "RotateKey", time, region,
               ip="AWS Internal", ua="AWS Internal", event_type="AwsServiceEvent",
               resources=[{"accountId": ACCT, "type": "AWS::KMS::Key", "ARN": key}],
               additionalEventData={"keyId": key})


# ---------------------------------------------------------------------------------- the story

D1, D2 = "2026-11-20", "2026-11-21"
files = {}  # (region, day, hhmm) -> records


def add(region, day, hhmm, records):
    files.setdefault((region, day, hhmm), []).extend(records)


alice = sso("AdministratorAccess", "alice@example.com", f"{D1}T09:01:30Z")
add("us-east-1", D1, "0905", [signin(alice, f"{D1}T09:01:30Z", mfa="No")] + noise(D1, "0905", "us-east-1", 8)
    + [kms_rotation(f"{D1}T09:03:12Z", "us-east-1")])
add("eu-west-1", D1, "0910", noise(D1, "0910", "eu-west-1", 6))

# 6 failed sign-ins for svc-reports within 3 minutes, across two log files, then a success
# without MFA and some probing with the console session.
fails = ["09:43:12", "09:43:41", "09:44:09", "09:44:38", "09:45:06", "09:45:33"]
add("us-east-1", D1, "0945", [failed_login(f"{D1}T{t}Z") for t in fails[:4]] + noise(D1, "0945", "us-east-1", 5))
session = f"{D1}T09:46:02Z"
add("us-east-1", D1, "0950",
    [failed_login(f"{D1}T{t}Z") for t in fails[4:]]
    + [signin(svc_reports(), session, ip=ATTACKER_IP, mfa="No"),
       api(svc_reports(key_id(), session), "iam.amazonaws.com", "ListUsers", f"{D1}T09:47:15Z", "us-east-1",
           ip=ATTACKER_IP, ua=CONSOLE, read_only=True, req=None),
       api(svc_reports(key_id(), session), "iam.amazonaws.com", "AttachUserPolicy", f"{D1}T09:48:02Z", "us-east-1",
           ip=ATTACKER_IP, ua=CONSOLE,
           req={"userName": "svc-reports", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"},
           error=("AccessDenied", "User: arn:aws:iam::111122223333:user/svc-reports is not authorized to perform: "
                  "iam:AttachUserPolicy on resource: user svc-reports because no identity-based policy allows "
                  "the iam:AttachUserPolicy action"))]
    + noise(D1, "0950", "us-east-1", 4))
add("us-west-2", D1, "0950",
    [api(svc_reports(key_id(), session), "ec2.amazonaws.com", "DescribeInstances", f"{D1}T09:48:40Z", "us-west-2",
         ip=ATTACKER_IP, ua=CONSOLE, read_only=True, req={"instancesSet": {}, "filterSet": {}},
         error=("Client.UnauthorizedOperation", "You are not authorized to perform this operation. User: "
                "arn:aws:iam::111122223333:user/svc-reports is not authorized to perform: ec2:DescribeInstances "
                "because no identity-based policy allows the ec2:DescribeInstances action"))]
    + noise(D1, "0950", "us-west-2", 6))

# Root signs in without MFA from an unusual address, looks around, creates a root access key and
# makes svc-reports an administrator.
root_session = f"{D1}T10:02:11Z"
root_console = root(key_id(), root_session)
add("us-east-1", D1, "1005",
    [signin(root(), f"{D1}T10:01:58Z", ip=ODD_IP, name="CredentialVerification", event_type="AwsServiceEvent"),
     signin(root(), root_session, ip=ODD_IP, mfa="No"),
     api(root_console, "iam.amazonaws.com", "GetAccountSummary", f"{D1}T10:03:04Z", "us-east-1", ip=ODD_IP,
         ua=CONSOLE, read_only=True),
     api(root_console, "iam.amazonaws.com", "ListUsers", f"{D1}T10:03:20Z", "us-east-1", ip=ODD_IP, ua=CONSOLE,
         read_only=True)]
    + noise(D1, "1005", "us-east-1", 5))
ROOT_KEY = "AKIA" + alnum(16)
add("us-east-1", D1, "1010",
    [api(root_console, "iam.amazonaws.com", "CreateAccessKey", f"{D1}T10:06:14Z", "us-east-1", ip=ODD_IP,
         ua=CONSOLE, req=None,
         resp={"accessKey": {"accessKeyId": ROOT_KEY, "status": "Active", "userName": "root",
                             "createDate": "Nov 20, 2026 10:06:14 AM"}}),
     api(root_console, "iam.amazonaws.com", "AttachUserPolicy", f"{D1}T10:07:40Z", "us-east-1", ip=ODD_IP,
         ua=CONSOLE, req={"userName": "svc-reports", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"})]
    + noise(D1, "1010", "us-east-1", 3))
# svc-reports, now an administrator, stops the data-events trail (home region us-west-2).
add("us-west-2", D1, "1015",
    [api(svc_reports(key_id(), session), "cloudtrail.amazonaws.com", "StopLogging", f"{D1}T10:12:05Z", "us-west-2",
         ip=ATTACKER_IP, ua=CONSOLE, req={"name": f"arn:aws:cloudtrail:us-west-2:{ACCT}:trail/data-events"})]
    + noise(D1, "1015", "us-west-2", 5))
add("eu-west-1", D1, "1020", noise(D1, "1020", "eu-west-1", 7) + [kms_rotation(f"{D1}T10:17:45Z", "eu-west-1")])

# Next morning: the root access key opens SSH to the world in eu-west-1; ordinary work goes on.
add("eu-west-1", D2, "0715",
    [api(root(ROOT_KEY), "ec2.amazonaws.com", "DescribeSecurityGroups", f"{D2}T07:11:31Z", "eu-west-1",
         ip=ODD_IP, read_only=True, req={"securityGroupSet": {}, "securityGroupIdSet": {}, "filterSet": {}}),
     api(root(ROOT_KEY), "ec2.amazonaws.com", "AuthorizeSecurityGroupIngress", f"{D2}T07:12:02Z", "eu-west-1",
         ip=ODD_IP,
         req={"groupId": "sg-0123456789abcdef0", "ipPermissions": {"items": [
             {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "groups": {},
              "ipRanges": {"items": [{"cidrIp": "0.0.0.0/0"}]}, "ipv6Ranges": {}, "prefixListIds": {}}]}},
         resp={"requestId": new_uuid(), "_return": True, "securityGroupRuleSet": {"items": [
             {"groupOwnerId": ACCT, "groupId": "sg-0123456789abcdef0", "securityGroupRuleId": "sgr-0a1b2c3d4e5f60718",
              "isEgress": False, "ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": "0.0.0.0/0"}]}})]
    + noise(D2, "0715", "eu-west-1", 4))
bob = sso("ReadOnlyAccess", "bob@example.com", f"{D2}T08:01:12Z")
add("us-east-1", D2, "0805", [signin(bob, f"{D2}T08:01:12Z", mfa="No"),
                              signin(federated("carol", f"{D2}T08:02:40Z"), f"{D2}T08:02:40Z", mfa="No")]
    + noise(D2, "0805", "us-east-1", 8))
add("us-west-2", D2, "0810", noise(D2, "0810", "us-west-2", 6))


# ---------------------------------------------------------------------------------- write

def write_gz(path, obj):
    body = json.dumps(obj, separators=(",", ":")).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(body, compresslevel=9, mtime=0))
    return body


def main():
    if ROOT.exists():
        shutil.rmtree(ROOT)
    digest_entries = []
    for (region, day, hhmm), records in sorted(files.items()):
        records.sort(key=lambda r: r["eventTime"])
        stamp = day.replace("-", "") + "T" + hhmm + "Z"
        name = f"{ACCT}_CloudTrail_{region}_{stamp}_{alnum(16, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789')}.json.gz"
        rel = Path("AWSLogs", ACCT, "CloudTrail", region, *day.split("-"), name)
        body = write_gz(ROOT / rel, {"Records": records})
        if region == "us-east-1" and day == D1 and "0900" < hhmm <= "1000":
            digest_entries.append({"s3Bucket": BUCKET, "s3Object": rel.as_posix(),
                                   "hashValue": hashlib.sha256(body).hexdigest(), "hashAlgorithm": "SHA-256",
                                   "newestEventTime": records[-1]["eventTime"],
                                   "oldestEventTime": records[0]["eventTime"]})
    digest_name = f"{ACCT}_CloudTrail-Digest_us-east-1_{TRAIL}_us-east-1_20261120T100000Z.json.gz"
    digest_rel = Path("AWSLogs", ACCT, "CloudTrail-Digest", "us-east-1", "2026", "11", "20", digest_name)
    write_gz(ROOT / digest_rel, {
        "awsAccountId": ACCT,
        "digestStartTime": f"{D1}T09:00:00Z",
        "digestEndTime": f"{D1}T10:00:00Z",
        "digestS3Bucket": BUCKET,
        "digestS3Object": digest_rel.as_posix(),
        "digestPublicKeyFingerprint": "%032x" % rng.getrandbits(128),
        "digestSignatureAlgorithm": "SHA256withRSA",
        "newestEventTime": max(e["newestEventTime"] for e in digest_entries),
        "oldestEventTime": min(e["oldestEventTime"] for e in digest_entries),
        "previousDigestS3Bucket": BUCKET,
        "previousDigestS3Object": digest_rel.as_posix().replace("20261120T100000Z", "20261120T090000Z"),
        "previousDigestHashValue": "%064x" % rng.getrandbits(256),
        "previousDigestHashAlgorithm": "SHA-256",
        "previousDigestSignature": "%0512x" % rng.getrandbits(2048),
        "logFiles": digest_entries,
    })
    print(f"wrote {len(files)} log files and 1 digest under {ROOT}")


if __name__ == "__main__":
    main()
