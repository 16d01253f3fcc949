#!/usr/bin/env python3
"""Generate a synthetic but realistic CloudTrail corpus for benchmarking `trailwarden scan`.

Why synthetic: real CloudTrail logs are sensitive and can't be shipped, yet a
throughput number is only meaningful on data that looks like the real thing.
So this script imitates what matters for a JSON + gzip + Sigma pipeline:

* the S3 delivery layout and object names
  (AWSLogs/<acct>/CloudTrail/<region>/YYYY/MM/DD/
   <acct>_CloudTrail_<region>_<YYYYMMDDTHHMMZ>_<16 alnum>.json.gz);
* the file body `{"Records":[...]}` in CloudTrail's compact JSON (no spaces);
* the record shape: field order, userIdentity variants (AssumedRole mostly,
  then AWSService, IAMUser, FederatedUser, Root rarely), nested
  requestParameters / responseElements / resources / tlsDetails, error codes;
* a service mix dominated by the chatty read-only calls seen in real accounts
  (STS AssumeRole, KMS Decrypt, EC2 Describe*, S3 data events, ...) plus a thin
  tail of security-relevant writes, so detection rules fire now and then;
* records of about 1.4 KB on average (printed at the end so it can be checked);
* gzip at level 6, the zlib default and what CloudTrail objects typically look
  like. Python's gzip module defaults to 9, which is slower to write and
  produces slightly smaller files than reality, so we set 6 explicitly.

Everything is derived from --seed, and each output file gets its own RNG seeded
from (seed, file index), so the corpus is byte-identical whatever the number
of worker processes.

Modes:
  default            many ~2-5k-record files totalling --records records.
  --single-file-gib  one big .json.gz of ~X GiB *uncompressed*, written as a
                     stream (never held in memory) -- for peak-RSS tests.
"""

import argparse
import datetime as dt
import gzip
import hashlib
import json
import multiprocessing as mp
import os
import random
import string
import sys
import time

# Compact separators are what CloudTrail emits; json.dumps' default ", " / ": "
# would inflate every record by ~5% and change the parser's workload.
DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

GZIP_LEVEL = 6
EPOCH = dt.datetime(2024, 3, 4, 0, 0, tzinfo=dt.timezone.utc)

ACCOUNTS = ["123456789012", "210987654321", "345678901234"]
# (region, weight): us-east-1 also carries the global services (IAM, STS
# global endpoint, sign-in), so it dominates as in most real trails.
REGIONS = [("us-east-1", 6), ("eu-west-1", 3), ("us-west-2", 2), ("ap-southeast-2", 1)]

ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits


def _seed_for(*parts):
    """Stable 64-bit seed from arbitrary parts (hash() is salted per process)."""
    h = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big")


def _uuid(rng):
    x = "%032x" % rng.getrandbits(128)
    return f"{x[:8]}-{x[8:12]}-4{x[13:16]}-{'89ab'[rng.getrandbits(2)]}{x[17:20]}-{x[20:]}"


def _key_id(rng, prefix):
    return prefix + "".join(rng.choices(UPPER_DIGITS, k=16))


def _ts(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------
# Identities. Pools are built once per (account, seed) and reused by reference;
# real trails also see the same few hundred principals over and over.
# ---------------------------------------------------------------------------

ROLE_NAMES = [
    "AWSReservedSSO_AdministratorAccess_4f1c2b9e8d7a6c5b", "AWSReservedSSO_ReadOnly_9a8b7c6d5e4f3a2b",
    "eks-node-group-prod-NodeInstanceRole-1QX2Y3Z4", "github-actions-deploy", "terraform-apply",
    "lambda-orders-processor-role", "ecsTaskExecutionRole", "datadog-integration-role",
    "OrganizationAccountAccessRole", "app-backend-prod", "app-backend-staging", "batch-etl-runner",
    "ssm-managed-instance", "cloudcustodian-policy-exec", "AWSServiceRoleForConfig", "karpenter-controller",
]
USER_NAMES = ["alice", "bob.smith", "ci-legacy", "backup-operator", "svc-reporting", "jenkins", "carol.ops"]
SERVICE_PRINCIPALS = ["ec2.amazonaws.com", "lambda.amazonaws.com", "cloudformation.amazonaws.com",
                      "autoscaling.amazonaws.com", "elasticloadbalancing.amazonaws.com",
                      "config.amazonaws.com", "ssm.amazonaws.com", "s3.amazonaws.com"]
SESSION_NAMES = ["i-0a1b2c3d4e5f60718", "botocore-session-1709512345", "alice@example.com",
                 "bob.smith@example.com", "GitHubActions", "aws-go-sdk-1709512399123456789",
                 "terraform-run-8842", "1709512000000", "karpenter", "cwe-session"]


def build_identity_pool(acct, rng):
    """Return (pool, weights) of userIdentity dicts for one account."""
    created = _ts(EPOCH - dt.timedelta(minutes=7))
    pool, weights = [], []

    for role in ROLE_NAMES:
        role_pid = _key_id(rng, "AROA")
        for _ in range(6):
            sess = rng.choice(SESSION_NAMES)
            ident = {
                "type": "AssumedRole",
                "principalId": f"{role_pid}:{sess}",
                "arn": f"arn:aws:sts::{acct}:assumed-role/{role}/{sess}",
                "accountId": acct,
                "accessKeyId": _key_id(rng, "ASIA"),
                "sessionContext": {
                    "sessionIssuer": {
                        "type": "Role",
                        "principalId": role_pid,
                        "arn": f"arn:aws:iam::{acct}:role/{role}" if not role.startswith("AWSReservedSSO")
                        else f"arn:aws:iam::{acct}:role/aws-reserved/sso.amazonaws.com/{role}",
                        "accountId": acct,
                        "userName": role,
                    },
                    "webIdFederationData": {},
                    "attributes": {"creationDate": created, "mfaAuthenticated": "false"},
                },
            }
            if rng.random() < 0.1:
                ident["sessionContext"]["ec2RoleDelivery"] = "2.0"
            pool.append(ident)
            weights.append(75.0 / (len(ROLE_NAMES) * 6))

    for user in USER_NAMES:
        ident = {
            "type": "IAMUser",
            "principalId": _key_id(rng, "AIDA"),
            "arn": f"arn:aws:iam::{acct}:user/{user}",
            "accountId": acct,
            "accessKeyId": _key_id(rng, "AKIA"),
            "userName": user,
        }
        pool.append(ident)
        weights.append(10.0 / len(USER_NAMES))

    for svc in SERVICE_PRINCIPALS:
        pool.append({"type": "AWSService", "invokedBy": svc})
        weights.append(10.0 / len(SERVICE_PRINCIPALS))

    fed = {
        "type": "FederatedUser",
        "principalId": f"{acct}:partner-portal",
        "arn": f"arn:aws:sts::{acct}:federated-user/partner-portal",
        "accountId": acct,
        "accessKeyId": _key_id(rng, "ASIA"),
        "sessionContext": {
            "sessionIssuer": {"type": "IAMUser", "principalId": _key_id(rng, "AIDA"),
                              "arn": f"arn:aws:iam::{acct}:user/federation-broker", "accountId": acct,
                              "userName": "federation-broker"},
            "webIdFederationData": {},
            "attributes": {"creationDate": created, "mfaAuthenticated": "false"},
        },
    }
    pool.append(fed)
    weights.append(4.7)

    root = {
        "type": "Root",
        "principalId": acct,
        "arn": f"arn:aws:iam::{acct}:root",
        "accountId": acct,
        "accessKeyId": _key_id(rng, "ASIA"),
        "sessionContext": {"sessionIssuer": {}, "webIdFederationData": {},
                           "attributes": {"creationDate": created, "mfaAuthenticated": "true"}},
    }
    pool.append(root)
    weights.append(0.3)
    return pool, weights


USER_AGENTS = [
    "aws-cli/2.15.30 Python/3.11.8 Linux/6.1.79-99.167.amzn2023.x86_64 exe/x86_64.amzn.2023 prompt/off command/{cmd}",
    "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#5.10.213 md/arch#x86_64 lang/python#3.11.6 Botocore/1.34.69",
    "aws-sdk-go-v2/1.25.2 os/linux lang/go#1.22.1 md/GOOS#linux md/GOARCH#amd64 api/{svc}#1.150.0",
    "aws-sdk-java/2.25.11 Linux/5.10.210 OpenJDK_64-Bit_Server_VM/17.0.10+7-LTS Java/17.0.10 vendor/Amazon.com_Inc.",
    "APN/1.0 HashiCorp/1.0 Terraform/1.7.4 terraform-provider-aws/5.40.0 aws-sdk-go-v2/1.25.2 api/{svc}#1.150.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    "aws-sdk-js/3.535.0 ua/2.0 os/linux#5.10.211 lang/js md/nodejs#20.11.1 api/{svc}#3.535.0",
    "AWS Internal",
]
CIPHERS = [("TLSv1.3", "TLS_AES_128_GCM_SHA256"), ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"),
           ("TLSv1.3", "TLS_AES_256_GCM_SHA384")]


def _ip(rng):
    # Mostly a handful of NAT egress addresses, some random public IPs.
    if rng.random() < 0.7:
        return rng.choice(["203.0.113.10", "198.51.100.24", "192.0.2.77", "52.94.133.131", "3.120.181.40"])
    return f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


# Where an EC2 instance's own calls come from: its public address or its NAT gateway's, both in
# AWS's published ranges (benches/aws-ip-ranges.json lists these prefixes; scan.sh passes it).
EC2_EGRESS = ["3.120.181.40", "3.121.44.9", "52.94.133.131", "18.197.44.12", "35.158.20.7"]


def _instance_ip(rng):
    # One call in 5,000 plants instance credentials used from outside AWS (stolen through the
    # metadata service), so instance-credentials-outside-aws has work, as in a real breach.
    if rng.random() < 0.0002:
        return f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    return rng.choice(EC2_EGRESS)


def _inst(rng):
    return "i-0" + "%016x" % rng.getrandbits(64)


def _sg(rng):
    return "sg-0" + "%016x" % rng.getrandbits(64)


def _bucket(rng, acct):
    return rng.choice(["prod-app-assets", "company-data-lake", "cloudtrail-logs", "tf-state", "backups"]) + "-" + acct


# ---------------------------------------------------------------------------
# Event catalogue: (weight, eventSource, eventName, readOnly, category, builder)
# builder(rng, acct, region, ident) -> dict of the event-specific parts
# (requestParameters, responseElements, resources, additionalEventData, ...).
# ---------------------------------------------------------------------------

def ev_assume_role(rng, acct, region, ident):
    role = rng.choice(ROLE_NAMES)
    sess = rng.choice(SESSION_NAMES)
    exp = _ts(EPOCH + dt.timedelta(hours=1))
    return {
        "requestParameters": {"roleArn": f"arn:aws:iam::{acct}:role/{role}", "roleSessionName": sess,
                              "durationSeconds": 3600},
        "responseElements": {
            "credentials": {"accessKeyId": _key_id(rng, "ASIA"), "sessionToken": "IQoJb3JpZ2luX2VjE" +
                            "".join(rng.choices(ALNUM, k=60)), "expiration": exp},
            "assumedRoleUser": {"assumedRoleId": f"{_key_id(rng, 'AROA')}:{sess}",
                                "arn": f"arn:aws:sts::{acct}:assumed-role/{role}/{sess}"},
        },
        "resources": [{"accountId": acct, "type": "AWS::IAM::Role", "ARN": f"arn:aws:iam::{acct}:role/{role}"}],
        "sharedEventID": _uuid(rng),
    }


def ev_get_caller_identity(rng, acct, region, ident):
    return {"requestParameters": None, "responseElements": None}


def ev_kms_decrypt(rng, acct, region, ident):
    key = _uuid(rng)
    return {
        "requestParameters": {"encryptionAlgorithmSpec": "SYMMETRIC_DEFAULT",
                              "encryptionContext": {"aws:lambda:FunctionArn":
                                                    f"arn:aws:lambda:{region}:{acct}:function:orders-processor"}},
        "responseElements": None,
        "resources": [{"accountId": acct, "type": "AWS::KMS::Key", "ARN": f"arn:aws:kms:{region}:{acct}:key/{key}"}],
    }


def ev_kms_generate_data_key(rng, acct, region, ident):
    key = _uuid(rng)
    return {
        "requestParameters": {"keyId": f"arn:aws:kms:{region}:{acct}:key/{key}", "keySpec": "AES_256",
                              "encryptionContext": {"aws:s3:arn": f"arn:aws:s3:::{_bucket(rng, acct)}/data/part-{rng.randint(0, 9999):05d}.parquet"}},
        "responseElements": None,
        "resources": [{"accountId": acct, "type": "AWS::KMS::Key", "ARN": f"arn:aws:kms:{region}:{acct}:key/{key}"}],
    }


def ev_describe_instances(rng, acct, region, ident):
    return {
        "requestParameters": {"instancesSet": {"items": [{"instanceId": _inst(rng)} for _ in range(rng.randint(0, 3))]},
                              "filterSet": {"items": [{"name": "instance-state-name",
                                                       "valueSet": {"items": [{"value": "running"}]}}]}},
        "responseElements": None,
    }


def ev_describe_sgs(rng, acct, region, ident):
    return {"requestParameters": {"securityGroupIdSet": {"items": [{"groupId": _sg(rng)}]},
                                  "securityGroupSet": {}, "filterSet": {}}, "responseElements": None}


def ev_describe_volumes(rng, acct, region, ident):
    return {"requestParameters": {"volumeSet": {}, "filterSet": {"items": [{"name": "attachment.instance-id",
            "valueSet": {"items": [{"value": _inst(rng)}]}}]}, "maxResults": 500}, "responseElements": None}


def ev_create_tags(rng, acct, region, ident):
    return {
        "requestParameters": {"resourcesSet": {"items": [{"resourceId": _inst(rng)}]},
                              "tagSet": {"items": [{"key": "team", "value": "payments"},
                                                   {"key": "env", "value": rng.choice(["prod", "staging"])}]}},
        "responseElements": {"requestId": _uuid(rng), "_return": True},
    }


def ev_run_instances(rng, acct, region, ident):
    iid = _inst(rng)
    sg = _sg(rng)
    subnet = "subnet-0" + "%016x" % rng.getrandbits(64)
    return {
        "requestParameters": {
            "instancesSet": {"items": [{"imageId": "ami-0" + "%016x" % rng.getrandbits(64), "minCount": 1, "maxCount": 1}]},
            "instanceType": rng.choice(["t3.medium", "m6i.large", "c7g.xlarge"]),
            "blockDeviceMapping": {}, "availabilityZone": f"{region}a", "monitoring": {"enabled": False},
            "subnetId": subnet, "disableApiTermination": False, "disableApiStop": False,
            "clientToken": _uuid(rng),
            "tagSpecificationSet": {"items": [{"resourceType": "instance", "tags": [{"key": "Name", "value": "worker"}]}]},
        },
        "responseElements": {
            "requestId": _uuid(rng), "reservationId": "r-0" + "%016x" % rng.getrandbits(64), "ownerId": acct,
            "groupSet": {},
            "instancesSet": {"items": [{
                "instanceId": iid, "imageId": "ami-0" + "%016x" % rng.getrandbits(64),
                "currentInstanceBootMode": "uefi", "instanceState": {"code": 0, "name": "pending"},
                "privateDnsName": f"ip-10-0-{rng.randint(0, 255)}-{rng.randint(1, 254)}.{region}.compute.internal",
                "amiLaunchIndex": 0, "productCodes": {}, "instanceType": "m6i.large",
                "launchTime": 1709512345000, "placement": {"availabilityZone": f"{region}a", "tenancy": "default"},
                "monitoring": {"state": "disabled"}, "subnetId": subnet, "vpcId": "vpc-0" + "%016x" % rng.getrandbits(64),
                "privateIpAddress": f"10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                "stateReason": {"code": "pending", "message": "pending"}, "architecture": "x86_64",
                "rootDeviceType": "ebs", "rootDeviceName": "/dev/xvda", "blockDeviceMapping": {},
                "virtualizationType": "hvm", "hypervisor": "xen", "tagSet": {"items": [{"key": "Name", "value": "worker"}]},
                "groupSet": {"items": [{"groupId": sg, "groupName": "default"}]},
                "sourceDestCheck": True,
                "networkInterfaceSet": {"items": [{"networkInterfaceId": "eni-0" + "%016x" % rng.getrandbits(64),
                                                   "subnetId": subnet, "ownerId": acct, "status": "in-use",
                                                   "privateIpAddress": "10.0.1.10", "sourceDestCheck": True,
                                                   "interfaceType": "interface"}]},
                "ebsOptimized": False, "enaSupport": True, "cpuOptions": {"coreCount": 1, "threadsPerCore": 2},
                "capacityReservationSpecification": {"capacityReservationPreference": "open"},
                "enclaveOptions": {"enabled": False},
                "metadataOptions": {"state": "pending", "httpTokens": "required", "httpPutResponseHopLimit": 2,
                                    "httpEndpoint": "enabled", "httpProtocolIpv4": "enabled",
                                    "httpProtocolIpv6": "disabled", "instanceMetadataTags": "disabled"},
                "maintenanceOptions": {"autoRecovery": "default"},
                "privateDnsNameOptions": {"hostnameType": "ip-name", "enableResourceNameDnsARecord": False,
                                          "enableResourceNameDnsAAAARecord": False},
            }]},
        },
    }


def ev_authorize_sg_ingress(rng, acct, region, ident):
    port = rng.choice([22, 443, 3389, 5432])
    return {
        "requestParameters": {"groupId": _sg(rng), "ipPermissions": {"items": [{
            "ipProtocol": "tcp", "fromPort": port, "toPort": port, "groups": {},
            "ipRanges": {"items": [{"cidrIp": rng.choice(["10.0.0.0/8", "0.0.0.0/0"])}]},
            "ipv6Ranges": {}, "prefixListIds": {}}]}},
        "responseElements": {"requestId": _uuid(rng), "_return": True, "securityGroupRuleSet": {"items": [{
            "groupOwnerId": acct, "groupId": _sg(rng), "securityGroupRuleId": "sgr-0" + "%016x" % rng.getrandbits(64),
            "isEgress": False, "ipProtocol": "tcp", "fromPort": port, "toPort": port, "cidrIpv4": "10.0.0.0/8"}]}},
    }


def ev_s3_get_object(rng, acct, region, ident):
    b = _bucket(rng, acct)
    key = f"data/{rng.randint(2019, 2024)}/{rng.randint(1, 12):02d}/part-{rng.randint(0, 99999):05d}.parquet"
    return {
        "requestParameters": {"bucketName": b, "Host": f"{b}.s3.{region}.amazonaws.com", "key": key},
        "responseElements": None,
        "additionalEventData": {"SignatureVersion": "SigV4", "CipherSuite": "TLS_AES_128_GCM_SHA256",
                                "bytesTransferredIn": 0, "AuthenticationMethod": "AuthHeader",
                                "x-amz-id-2": "".join(rng.choices(ALNUM, k=56)),
                                "bytesTransferredOut": rng.randint(100, 50_000_000)},
        "resources": [{"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{b}/{key}"},
                      {"accountId": acct, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{b}"}],
    }


def ev_s3_put_object(rng, acct, region, ident):
    d = ev_s3_get_object(rng, acct, region, ident)
    d["additionalEventData"]["bytesTransferredIn"] = d["additionalEventData"].pop("bytesTransferredOut")
    d["additionalEventData"]["bytesTransferredOut"] = 0
    d["responseElements"] = {"x-amz-server-side-encryption": "aws:kms",
                             "x-amz-server-side-encryption-aws-kms-key-id": f"arn:aws:kms:{region}:{acct}:key/{_uuid(rng)}"}
    return d


def ev_s3_list_buckets(rng, acct, region, ident):
    return {"requestParameters": {"Host": "s3.amazonaws.com"}, "responseElements": None,
            "additionalEventData": {"SignatureVersion": "SigV4", "CipherSuite": "TLS_AES_128_GCM_SHA256",
                                    "bytesTransferredIn": 0, "AuthenticationMethod": "AuthHeader",
                                    "x-amz-id-2": "".join(rng.choices(ALNUM, k=56)), "bytesTransferredOut": 4211}}


def ev_s3_get_bucket_acl(rng, acct, region, ident):
    b = _bucket(rng, acct)
    return {"requestParameters": {"bucketName": b, "Host": f"{b}.s3.{region}.amazonaws.com", "acl": ""},
            "responseElements": None,
            "resources": [{"accountId": acct, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{b}"}]}


def ev_s3_put_bucket_versioning(rng, acct, region, ident):
    b = _bucket(rng, acct)
    return {"requestParameters": {"bucketName": b, "Host": f"{b}.s3.{region}.amazonaws.com", "versioning": "",
                                  "VersioningConfiguration": {"Status": rng.choice(["Enabled", "Suspended"]),
                                                              "xmlns": "http://s3.amazonaws.com/doc/2006-03-01/"}},
            "responseElements": None,
            "resources": [{"accountId": acct, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{b}"}]}


def ev_iam_get_role(rng, acct, region, ident):
    return {"requestParameters": {"roleName": rng.choice(ROLE_NAMES)}, "responseElements": None}


def ev_iam_list_roles(rng, acct, region, ident):
    return {"requestParameters": {"maxItems": 100}, "responseElements": None}


def ev_iam_list_attached(rng, acct, region, ident):
    return {"requestParameters": {"roleName": rng.choice(ROLE_NAMES)}, "responseElements": None}


def ev_iam_attach_role_policy(rng, acct, region, ident):
    pol = rng.choice(["arn:aws:iam::aws:policy/ReadOnlyAccess", "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
                      "arn:aws:iam::aws:policy/AdministratorAccess"])
    return {"requestParameters": {"roleName": rng.choice(ROLE_NAMES), "policyArn": pol}, "responseElements": None}


def ev_iam_create_access_key(rng, acct, region, ident):
    user = rng.choice(USER_NAMES)
    return {"requestParameters": {"userName": user},
            "responseElements": {"accessKey": {"userName": user, "accessKeyId": _key_id(rng, "AKIA"),
                                               "status": "Active", "createDate": "Mar 4, 2024, 10:12:45 AM"}}}


def ev_iam_put_role_policy(rng, acct, region, ident):
    doc = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"],
                      "Resource": f"arn:aws:s3:::{_bucket(rng, acct)}/*"}]})
    return {"requestParameters": {"roleName": rng.choice(ROLE_NAMES), "policyName": "inline-s3-read",
                                  "policyDocument": doc}, "responseElements": None}


def ev_lambda_invoke(rng, acct, region, ident):
    fn = rng.choice(["orders-processor", "thumbnailer", "auth-authorizer", "nightly-report"])
    arn = f"arn:aws:lambda:{region}:{acct}:function:{fn}"
    return {"requestParameters": {"functionName": arn, "sourceArn": f"arn:aws:execute-api:{region}:{acct}:a1b2c3d4e5/prod/POST/orders"},
            "responseElements": None, "additionalEventData": {"functionVersion": f"{arn}:$LATEST"},
            "resources": [{"accountId": acct, "type": "AWS::Lambda::Function", "ARN": arn}]}


def ev_lambda_get_function(rng, acct, region, ident):
    return {"requestParameters": {"functionName": rng.choice(["orders-processor", "thumbnailer"])}, "responseElements": None}


def ev_lambda_update_config(rng, acct, region, ident):
    fn = rng.choice(["orders-processor", "thumbnailer"])
    return {"requestParameters": {"functionName": fn, "timeout": 30, "memorySize": 512,
                                  "environment": {}, "layers": [f"arn:aws:lambda:{region}:{acct}:layer:common-deps:{rng.randint(1, 40)}"]},
            "responseElements": {"functionName": fn, "functionArn": f"arn:aws:lambda:{region}:{acct}:function:{fn}",
                                 "runtime": "python3.12", "role": f"arn:aws:iam::{acct}:role/lambda-orders-processor-role",
                                 "handler": "app.handler", "codeSize": 5242880, "timeout": 30, "memorySize": 512,
                                 "lastModified": "2024-03-04T10:12:45.000+0000", "version": "$LATEST",
                                 "state": "Active", "lastUpdateStatus": "InProgress", "architectures": ["arm64"]}}


def ev_ct_lookup(rng, acct, region, ident):
    return {"requestParameters": {"lookupAttributes": [{"attributeKey": "EventName", "attributeValue": "ConsoleLogin"}],
                                  "maxResults": 50}, "responseElements": None}


def ev_ct_describe_trails(rng, acct, region, ident):
    return {"requestParameters": {"includeShadowTrails": True}, "responseElements": None}


def ev_ct_stop_logging(rng, acct, region, ident):
    return {"requestParameters": {"name": f"arn:aws:cloudtrail:us-east-1:{acct}:trail/org-trail"}, "responseElements": None}


def ev_console_login(rng, acct, region, ident):
    ok = rng.random() < 0.93
    mfa = "Yes" if rng.random() < 0.85 else "No"
    d = {"requestParameters": None,
         "responseElements": {"ConsoleLogin": "Success" if ok else "Failure"},
         "additionalEventData": {"LoginTo": "https://console.aws.amazon.com/console/home?state=hashArgs%23&isauthcode=true",
                                 "MobileVersion": "No", "MFAIdentifier": f"arn:aws:iam::{acct}:mfa/device", "MFAUsed": mfa},
         "_eventType": "AwsConsoleSignIn"}
    if not ok:
        d["errorMessage"] = "Failed authentication"
    return d


def ev_logs_create_stream(rng, acct, region, ident):
    return {"requestParameters": {"logGroupName": rng.choice(["/aws/lambda/orders-processor", "/ecs/api", "/aws/eks/prod/cluster"]),
                                  "logStreamName": f"2024/03/04/[$LATEST]{'%032x' % rng.getrandbits(128)}"},
            "responseElements": None}


def ev_secrets_get(rng, acct, region, ident):
    name = rng.choice(["prod/db/orders", "prod/stripe/api-key", "staging/db/orders"])
    return {"requestParameters": {"secretId": f"arn:aws:secretsmanager:{region}:{acct}:secret:{name}-AbCdEf"},
            "responseElements": None}


def ev_ssm_get_parameter(rng, acct, region, ident):
    return {"requestParameters": {"name": rng.choice(["/app/prod/feature-flags", "/app/prod/db-host", "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"]),
                                  "withDecryption": rng.random() < 0.5}, "responseElements": None}


def ev_ssm_update_instance_info(rng, acct, region, ident):
    return {"requestParameters": {"instanceId": _inst(rng), "agentVersion": "3.3.40.0", "agentStatus": "Active",
                                  "platformType": "Linux", "platformName": "Amazon Linux", "platformVersion": "2023",
                                  "iPAddress": f"10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                                  "computerName": f"ip-10-0-{rng.randint(0, 255)}-{rng.randint(1, 254)}.ec2.internal",
                                  "agentName": "amazon-ssm-agent", "availabilityZone": f"{region}b"},
            "responseElements": None}


def ev_dynamodb_describe(rng, acct, region, ident):
    return {"requestParameters": {"tableName": rng.choice(["orders", "sessions", "inventory"])}, "responseElements": None,
            "resources": [{"accountId": acct, "type": "AWS::DynamoDB::Table",
                           "ARN": f"arn:aws:dynamodb:{region}:{acct}:table/orders"}]}


def ev_monitoring_get_metric_data(rng, acct, region, ident):
    return {"requestParameters": {"metricDataQueries": [{"id": "m1", "metricStat": {"metric": {"namespace": "AWS/EC2",
            "metricName": "CPUUtilization", "dimensions": [{"name": "InstanceId", "value": _inst(rng)}]},
            "period": 300, "stat": "Average"}, "returnData": True}], "startTime": "Mar 4, 2024, 9:00:00 AM",
            "endTime": "Mar 4, 2024, 10:00:00 AM"}, "responseElements": None}


def ev_ecr_auth(rng, acct, region, ident):
    return {"requestParameters": {"registryIds": [acct]}, "responseElements": None}


# Weights are "events per 10k" and roughly follow a busy production account.
CATALOG = [
    (1400, "sts.amazonaws.com", "AssumeRole", True, "Management", ev_assume_role),
    (350, "sts.amazonaws.com", "GetCallerIdentity", True, "Management", ev_get_caller_identity),
    (1300, "kms.amazonaws.com", "Decrypt", True, "Management", ev_kms_decrypt),
    (500, "kms.amazonaws.com", "GenerateDataKey", True, "Management", ev_kms_generate_data_key),
    (900, "ec2.amazonaws.com", "DescribeInstances", True, "Management", ev_describe_instances),
    (300, "ec2.amazonaws.com", "DescribeSecurityGroups", True, "Management", ev_describe_sgs),
    (250, "ec2.amazonaws.com", "DescribeVolumes", True, "Management", ev_describe_volumes),
    (120, "ec2.amazonaws.com", "CreateTags", False, "Management", ev_create_tags),
    (40, "ec2.amazonaws.com", "RunInstances", False, "Management", ev_run_instances),
    (15, "ec2.amazonaws.com", "AuthorizeSecurityGroupIngress", False, "Management", ev_authorize_sg_ingress),
    (1100, "s3.amazonaws.com", "GetObject", True, "Data", ev_s3_get_object),
    (500, "s3.amazonaws.com", "PutObject", False, "Data", ev_s3_put_object),
    (60, "s3.amazonaws.com", "ListBuckets", True, "Management", ev_s3_list_buckets),
    (120, "s3.amazonaws.com", "GetBucketAcl", True, "Management", ev_s3_get_bucket_acl),
    (4, "s3.amazonaws.com", "PutBucketVersioning", False, "Management", ev_s3_put_bucket_versioning),
    (250, "iam.amazonaws.com", "GetRole", True, "Management", ev_iam_get_role),
    (80, "iam.amazonaws.com", "ListRoles", True, "Management", ev_iam_list_roles),
    (120, "iam.amazonaws.com", "ListAttachedRolePolicies", True, "Management", ev_iam_list_attached),
    (8, "iam.amazonaws.com", "AttachRolePolicy", False, "Management", ev_iam_attach_role_policy),
    (3, "iam.amazonaws.com", "CreateAccessKey", False, "Management", ev_iam_create_access_key),
    (10, "iam.amazonaws.com", "PutRolePolicy", False, "Management", ev_iam_put_role_policy),
    (450, "lambda.amazonaws.com", "Invoke", False, "Data", ev_lambda_invoke),
    (120, "lambda.amazonaws.com", "GetFunction20150331v2", True, "Management", ev_lambda_get_function),
    (10, "lambda.amazonaws.com", "UpdateFunctionConfiguration20150331v2", False, "Management", ev_lambda_update_config),
    (60, "cloudtrail.amazonaws.com", "LookupEvents", True, "Management", ev_ct_lookup),
    (60, "cloudtrail.amazonaws.com", "DescribeTrails", True, "Management", ev_ct_describe_trails),
    (1, "cloudtrail.amazonaws.com", "StopLogging", False, "Management", ev_ct_stop_logging),
    (25, "signin.amazonaws.com", "ConsoleLogin", False, "Management", ev_console_login),
    (350, "logs.amazonaws.com", "CreateLogStream", False, "Management", ev_logs_create_stream),
    (200, "secretsmanager.amazonaws.com", "GetSecretValue", True, "Management", ev_secrets_get),
    (350, "ssm.amazonaws.com", "GetParameter", True, "Management", ev_ssm_get_parameter),
    (250, "ssm.amazonaws.com", "UpdateInstanceInformation", False, "Management", ev_ssm_update_instance_info),
    (200, "dynamodb.amazonaws.com", "DescribeTable", True, "Management", ev_dynamodb_describe),
    (250, "monitoring.amazonaws.com", "GetMetricData", True, "Management", ev_monitoring_get_metric_data),
    (150, "ecr.amazonaws.com", "GetAuthorizationToken", True, "Management", ev_ecr_auth),
]
CAT_WEIGHTS = [c[0] for c in CATALOG]
SERVICE_HEAVY = {"AssumeRole", "Decrypt", "GenerateDataKey"}
# Events that only ever appear in us-east-1 (global services).
GLOBAL_SOURCES = {"iam.amazonaws.com", "signin.amazonaws.com"}


class Generator:
    """Builds records for one (account, region) stream from a private RNG."""

    pools = {}

    def __init__(self, seed, acct, region, rng):
        key = (seed, acct)
        if key not in Generator.pools:
            Generator.pools[key] = build_identity_pool(acct, random.Random(_seed_for(seed, acct, "ids")))
        self.pool, self.weights = Generator.pools[key]
        self.acct, self.region, self.rng = acct, region, rng
        self.services = [p for p in self.pool if p["type"] == "AWSService"]
        self.signin = [p for p in self.pool if p["type"] in ("IAMUser", "AssumedRole")][:40] + [self.pool[-1]]
        if region == "us-east-1":
            self.catalog, self.cat_w = CATALOG, CAT_WEIGHTS
        else:
            self.catalog = [c for c in CATALOG if c[1] not in GLOBAL_SOURCES]
            self.cat_w = [c[0] for c in self.catalog]

    def record(self, t):
        rng, acct, region = self.rng, self.acct, self.region
        _, source, name, read_only, category, build = rng.choices(self.catalog, self.cat_w)[0]
        if source == "signin.amazonaws.com":
            ident = rng.choice(self.signin)
        elif name in SERVICE_HEAVY and rng.random() < 0.45:
            # Most AssumeRole / KMS calls in a real trail are AWS services acting
            # for a workload (Lambda assuming its role, S3 SSE-KMS, ...).
            ident = rng.choice(self.services)
        else:
            ident = rng.choices(self.pool, self.weights)[0]
        parts = build(rng, acct, region, ident)
        service = source.split(".")[0]

        if ident["type"] == "AWSService":
            src_ip = ua = ident["invokedBy"]
        else:
            instance = ident["type"] == "AssumedRole" and ident["arn"].rsplit("/", 1)[-1].startswith("i-")
            src_ip = _instance_ip(rng) if instance else _ip(rng)
            ua = rng.choice(USER_AGENTS).format(svc=service, cmd=f"{service}.{name.lower()}")
            if source == "signin.amazonaws.com":
                ua = USER_AGENTS[5]

        rec = {
            "eventVersion": "1.09" if category == "Management" else "1.10",
            "userIdentity": ident,
            "eventTime": _ts(t),
            "eventSource": source,
            "eventName": name,
            "awsRegion": region,
            "sourceIPAddress": src_ip,
            "userAgent": ua,
        }
        if "errorMessage" in parts:
            # A failed ConsoleLogin carries only errorMessage, no errorCode.
            rec["errorMessage"] = parts.pop("errorMessage")
        elif not read_only and rng.random() < 0.03 or read_only and rng.random() < 0.01:
            rec["errorCode"] = rng.choice(["AccessDenied", "Client.UnauthorizedOperation", "ThrottlingException"])
            rec["errorMessage"] = (f"User: {ident.get('arn', 'unknown')} is not authorized to perform: "
                                   f"{service}:{name} because no identity-based policy allows the {service}:{name} action")
            parts["responseElements"] = None
        rec["requestParameters"] = parts.pop("requestParameters", None)
        rec["responseElements"] = parts.pop("responseElements", None)
        if "additionalEventData" in parts:
            rec["additionalEventData"] = parts.pop("additionalEventData")
        rec["requestID"] = _uuid(rng)
        rec["eventID"] = _uuid(rng)
        rec["readOnly"] = read_only
        if "resources" in parts:
            rec["resources"] = parts.pop("resources")
        rec["eventType"] = parts.pop("_eventType", "AwsApiCall")
        rec["managementEvent"] = category == "Management"
        rec["recipientAccountId"] = acct
        if "sharedEventID" in parts:
            rec["sharedEventID"] = parts.pop("sharedEventID")
        rec["eventCategory"] = category
        if ident["type"] != "AWSService":
            tls, cipher = rng.choice(CIPHERS)
            rec["tlsDetails"] = {"tlsVersion": tls, "cipherSuite": cipher,
                                 "clientProvidedHostHeader": f"{service}.{region}.amazonaws.com"}
            if ua == USER_AGENTS[5] and source != "signin.amazonaws.com":
                rec["sessionCredentialFromConsole"] = "true"
        return rec


# ---------------------------------------------------------------------------
# Corpus layout
# ---------------------------------------------------------------------------

def plan_files(records, per_file, seed):
    """Split `records` into files of ~0.6x-1.4x per_file, each bound to an
    (account, region) stream and a delivery time 5 minutes after that stream's
    previous file, like CloudTrail's ~5-minute delivery cadence."""
    rng = random.Random(_seed_for(seed, "plan"))
    streams = [(a, r) for a in ACCOUNTS for r, _ in REGIONS]
    stream_w = [w for _ in ACCOUNTS for _, w in REGIONS]
    next_t = {s: EPOCH + dt.timedelta(minutes=5 + rng.randint(0, 4)) for s in streams}
    plan, left, idx = [], records, 0
    while left > 0:
        n = min(left, max(1, int(per_file * rng.uniform(0.6, 1.4))))
        acct, region = rng.choices(streams, stream_w)[0]
        t = next_t[(acct, region)]
        next_t[(acct, region)] = t + dt.timedelta(minutes=5)
        suffix = "".join(rng.choices(ALNUM, k=16))
        name = f"{acct}_CloudTrail_{region}_{t.strftime('%Y%m%dT%H%MZ')}_{suffix}.json.gz"
        rel = os.path.join("AWSLogs", acct, "CloudTrail", region, t.strftime("%Y"), t.strftime("%m"),
                           t.strftime("%d"), name)
        plan.append((idx, rel, acct, region, t, n))
        left -= n
        idx += 1
    return plan


def _records_json(gen, t_end, n):
    """n compact JSON records, eventTime spread over the 5 minutes before t_end."""
    rng = gen.rng
    span = 300
    offsets = sorted(rng.randrange(span) for _ in range(n))
    t0 = t_end - dt.timedelta(seconds=span)
    out = []
    for off in offsets:
        out.append(DUMPS(gen.record(t0 + dt.timedelta(seconds=off))))
    return out


def write_file(job):
    seed, out_dir, (idx, rel, acct, region, t, n) = job
    rng = random.Random(_seed_for(seed, "file", idx))
    gen = Generator(seed, acct, region, rng)
    recs = _records_json(gen, t, n)
    body = ('{"Records":[' + ",".join(recs) + "]}").encode()
    path = os.path.join(out_dir, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # mtime=0 keeps the gzip header (and so the file) reproducible.
    gz = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
    with open(path + ".tmp", "wb") as f:
        f.write(gz)
    os.replace(path + ".tmp", path)  # a killed run never leaves a truncated .json.gz behind
    rec_bytes = sum(len(r.encode()) for r in recs)
    return n, rec_bytes, len(body), len(gz)


def gen_chunk(job):
    """Worker for single-file mode: one chunk of records as a JSON byte string."""
    seed, chunk_idx, n = job
    acct, region = ACCOUNTS[0], "us-east-1"
    rng = random.Random(_seed_for(seed, "big", chunk_idx))
    gen = Generator(seed, acct, region, rng)
    t = EPOCH + dt.timedelta(minutes=5 * (chunk_idx + 1))
    recs = _records_json(gen, t, n)
    return n, sum(len(r.encode()) for r in recs), ",".join(recs).encode()


def single_file(args):
    target = int(args.single_file_gib * (1 << 30))
    acct, region = ACCOUNTS[0], "us-east-1"
    t = EPOCH
    rng = random.Random(_seed_for(args.seed, "bigname"))
    name = f"{acct}_CloudTrail_{region}_{t.strftime('%Y%m%dT%H%MZ')}_{''.join(rng.choices(ALNUM, k=16))}.json.gz"
    rel = os.path.join("AWSLogs", acct, "CloudTrail", region, t.strftime("%Y/%m/%d"), name)
    path = os.path.join(args.out, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)

    chunk = 5000
    # Enough chunks to pass the target even if records come out small; the
    # loop stops as soon as the target is reached (imap is lazy, bounded by
    # the pool's prefetch, so memory stays at a few chunks).
    max_chunks = target // (chunk * 500) + 2
    jobs = ((args.seed, i, chunk) for i in range(max_chunks))
    written = records = rec_bytes = 0
    start = time.perf_counter()
    with open(path + ".tmp", "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=raw, mtime=0) as gz, \
            mp.Pool(args.workers) as pool:
        gz.write(b'{"Records":[')
        written += 12
        first = True
        for n, rb, data in pool.imap(gen_chunk, jobs, chunksize=1):
            if not first:
                gz.write(b",")
                written += 1
            gz.write(data)
            first = False
            written += len(data)
            records += n
            rec_bytes += rb
            if written >= target:
                pool.terminate()
                break
        gz.write(b"]}")
        written += 2
    os.replace(path + ".tmp", path)
    elapsed = time.perf_counter() - start
    comp = os.path.getsize(path)
    _write_stats(args, {"mode": "single-file", "path": path, "files": 1, "records": records,
                        "mean_record_bytes": rec_bytes / records, "uncompressed_bytes": written,
                        "compressed_bytes": comp, "gzip_level": GZIP_LEVEL, "seconds": elapsed})
    print(f"single file: {path}")
    print(f"records={records} mean_record_bytes={rec_bytes / records:.0f} uncompressed_bytes={written} "
          f"({written / 1e6:.1f} MB, {written / (1 << 30):.3f} GiB) compressed_bytes={comp} "
          f"({comp / 1e6:.1f} MB, ratio {written / comp:.1f}x) gzip_level={GZIP_LEVEL} seconds={elapsed:.1f}")


def _write_stats(args, stats):
    """Machine-readable totals for benches/scan.sh (kept outside the corpus
    directory so the scanner never sees a stray non-CloudTrail file)."""
    if args.stats:
        with open(args.stats, "w") as f:
            json.dump(stats, f, indent=1)
            f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory (AWSLogs/... is created inside)")
    ap.add_argument("--records", type=int, default=200_000, help="total records (default 200000)")
    ap.add_argument("--per-file", type=int, default=3500,
                    help="mean records per file; actual sizes vary 0.6x-1.4x (default 3500)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--single-file-gib", type=float, default=None,
                    help="instead write ONE .json.gz of about this many GiB uncompressed, streaming")
    ap.add_argument("--stats", default=None, help="also write the totals as JSON to this file")
    args = ap.parse_args()

    if args.single_file_gib is not None:
        single_file(args)
        return

    start = time.perf_counter()
    plan = plan_files(args.records, args.per_file, args.seed)
    jobs = [(args.seed, args.out, p) for p in plan]
    tot = [0, 0, 0, 0]
    with mp.Pool(args.workers) as pool:
        # Biggest-first isn't needed: files are similar in size.
        for res in pool.imap_unordered(write_file, jobs, chunksize=1):
            for i, v in enumerate(res):
                tot[i] += v
    elapsed = time.perf_counter() - start
    n, rec_bytes, raw, comp = tot
    _write_stats(args, {"mode": "corpus", "path": args.out, "files": len(plan), "records": n,
                        "mean_record_bytes": rec_bytes / n, "uncompressed_bytes": raw,
                        "compressed_bytes": comp, "gzip_level": GZIP_LEVEL, "seconds": elapsed})
    print(f"corpus: {args.out}")
    print(f"files={len(plan)} records={n} mean_record_bytes={rec_bytes / n:.0f} "
          f"uncompressed_bytes={raw} ({raw / 1e6:.1f} MB) compressed_bytes={comp} ({comp / 1e6:.1f} MB, "
          f"ratio {raw / comp:.1f}x) gzip_level={GZIP_LEVEL} seconds={elapsed:.1f} workers={args.workers}")


if __name__ == "__main__":
    sys.exit(main())
