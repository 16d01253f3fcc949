#!/usr/bin/env python3
"""Try the trailwarden daemon locally in one command, against moto (an AWS emulator).

    .venv/bin/python examples/local-trial.py

It starts moto on 127.0.0.1, creates what the CloudFormation stack would (a trail bucket that
notifies an SQS queue, an alert topic with a subscribed queue standing in for a pager), starts
`trailwarden run` against them, uploads the example CloudTrail log files in examples/cloudtrail
as CloudTrail would, and prints each page as it arrives. It stops by itself once every file was
read and no page has come for a few seconds (or on Ctrl-C), stops the daemon and moto, and
deletes what it made. Nothing leaves the machine.

Needs the repository's .venv (moto and boto3: `python3 tests/bootstrap_moto.py` makes it) and a
trailwarden binary: the one on PATH (`cargo install --path . --locked`), else target/release or
target/debug, else --binary PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "cloudtrail"
REGION = "us-east-1"
BUCKET = "trail-demo"
# With no page for this long after every file was read, the trial is over.
QUIET_SECS = 8
# The whole trial's limit, in case something is wrong.
TIMEOUT_SECS = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_binary(given: str | None) -> Path:
    if given:
        return Path(given)
    on_path = shutil.which("trailwarden")
    if on_path:
        return Path(on_path)
    for profile in ("release", "debug"):
        candidate = REPO / "target" / profile / "trailwarden"
        if candidate.is_file():
            return candidate
    sys.exit("no trailwarden binary: run `cargo install --path . --locked` or pass --binary PATH")


def find_moto() -> Path:
    for candidate in (REPO / ".venv" / "bin" / "moto_server", shutil.which("moto_server")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    sys.exit("no moto_server: run `python3 tests/bootstrap_moto.py` (it makes .venv), then use .venv/bin/python")


def wait_until(what: str, ready, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")
        time.sleep(0.2)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


class Trial:
    """The processes and the directory a trial owns, stopped and removed by close()."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="trailwarden-trial-"))
        self.moto: subprocess.Popen | None = None
        self.daemon: subprocess.Popen | None = None

    def close(self, keep_logs: bool) -> None:
        if self.daemon and self.daemon.poll() is None:
            # SIGTERM: the daemon hands its messages back and exits within its grace period.
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
        if self.moto and self.moto.poll() is None:
            self.moto.terminate()
            try:
                self.moto.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.moto.kill()
        if keep_logs:
            print(f"daemon log kept in {self.dir / 'daemon.log'}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def run(trial: Trial, binary: Path, show_log: bool) -> int:
    import boto3  # from .venv, with moto

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    trial.moto = subprocess.Popen(
        [str(find_moto()), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until("moto", lambda: answers(f"{endpoint}/moto-api/"))
    print(f"moto listening on {endpoint}", file=sys.stderr)

    credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    client = lambda service: boto3.client(  # noqa: E731
        service, endpoint_url=endpoint, region_name=REGION, **credentials
    )
    s3, sqs, sns = client("s3"), client("sqs"), client("sns")

    # What the stack and deploy/connect-bucket.sh make: bucket → queue, topic → subscribers.
    s3.create_bucket(Bucket=BUCKET)
    queue_url = sqs.create_queue(QueueName="trailwarden-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": ".json.gz"}]}},
                }
            ]
        },
    )
    topic_arn = sns.create_topic(Name="trailwarden-alerts")["TopicArn"]
    pages_url = sqs.create_queue(QueueName="pages")["QueueUrl"]
    pages_arn = sqs.get_queue_attributes(QueueUrl=pages_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=pages_arn)
    print(f"bucket {BUCKET} → queue trailwarden-events; topic trailwarden-alerts → queue pages", file=sys.stderr)

    health = f"127.0.0.1:{free_port()}"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(trial.dir),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "TRAILWARDEN_ENDPOINT_URL": endpoint,
        "TRAILWARDEN_QUEUE_URL": queue_url,
        "TRAILWARDEN_TOPIC_ARN": topic_arn,
        "TRAILWARDEN_ALLOWED_BUCKETS": BUCKET,
        "TRAILWARDEN_WAIT_TIME_SECS": "1",
        "TRAILWARDEN_HEALTH_LISTEN": health,
        "TRAILWARDEN_LOG_FORMAT": "json",
        # Offline: no fetch of AWS's IP ranges, and no posture audit of the emulator's account.
        "TRAILWARDEN_AWS_IP_RANGES_URL": "false",
        "TRAILWARDEN_POSTURE": "false",
    }
    log_path = trial.dir / "daemon.log"
    with open(log_path, "wb") as log:
        trial.daemon = subprocess.Popen([str(binary), "run"], env=env, stdout=log, stderr=log)
    wait_until("trailwarden", lambda: answers(f"http://{health}/healthz") or trial.daemon.poll() is not None)
    if trial.daemon.poll() is not None:
        print(log_path.read_text(), file=sys.stderr)
        raise RuntimeError(f"trailwarden exited with {trial.daemon.returncode}")
    print(f"trailwarden {binary} running (health on {health})", file=sys.stderr)

    # The log files and the digest file, which the daemon skips as CloudTrail writes it there.
    files = sorted(p for p in EXAMPLES.rglob("*.json.gz"))
    for path in files:
        s3.upload_file(str(path), BUCKET, str(path.relative_to(EXAMPLES)))
    print(f"uploaded {len(files)} files (log files and a digest) from {EXAMPLES.relative_to(REPO)}\n", file=sys.stderr)

    pages = 0
    last_page = time.monotonic()
    deadline = time.monotonic() + TIMEOUT_SECS
    while time.monotonic() < deadline:
        if trial.daemon.poll() is not None:
            print(log_path.read_text(), file=sys.stderr)
            raise RuntimeError(f"trailwarden exited with {trial.daemon.returncode}")
        got = sqs.receive_message(QueueUrl=pages_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in got.get("Messages", []):
            envelope = json.loads(message["Body"])
            # SQS subscribers get the page's JSON (email subscribers get text).
            try:
                summary = json.loads(envelope.get("Message", "{}")).get("summary", "")
            except json.JSONDecodeError:
                summary = envelope.get("Message", "").splitlines()[0]
            print(f"PAGE {envelope.get('Subject', '')}\n     {summary}")
            pages += 1
            last_page = time.monotonic()
            sqs.delete_message(QueueUrl=pages_url, ReceiptHandle=message["ReceiptHandle"])
        attrs = sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        backlog = sum(int(v) for v in attrs.values())
        if backlog == 0 and time.monotonic() - last_page > QUIET_SECS:
            break
    else:
        print(f"stopped after {TIMEOUT_SECS} s", file=sys.stderr)

    if show_log:
        print(log_path.read_text(), file=sys.stderr)
    print(
        f"\n{pages} pages from {len(files)} files. Alerts below min_level (medium) are logged,"
        " not paged; `trailwarden scan examples/cloudtrail` lists them all.",
        file=sys.stderr,
    )
    return 0 if pages > 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", help="the trailwarden binary to run")
    parser.add_argument("--show-log", action="store_true", help="print the daemon's log at the end")
    parser.add_argument("--keep-log", action="store_true", help="keep the daemon's log file")
    args = parser.parse_args()
    binary = find_binary(args.binary)
    trial = Trial()
    code = 1
    try:
        code = run(trial, binary, args.show_log)
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        code = 130
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
    finally:
        trial.close(keep_logs=args.keep_log)
    return code


if __name__ == "__main__":
    sys.exit(main())
