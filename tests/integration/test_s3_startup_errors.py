"""A missing bucket or rejected credentials stop every command at start: a message naming
the bucket or the credentials, exit 2, no traceback, nothing written."""

from __future__ import annotations

import json
import os
import sys

import boto3
import pytest

from harness import REFERENCE
from harness.procs import driftlake_env, free_port, run_python, start_ready
from harness.s3 import aws_env, new_bucket_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

COMMANDS = {
    "serving": ["-m", "serving", "--reference", str(REFERENCE), "--port", "1"],
    "analytics run": ["-m", "analytics", "run", "--once", "--reference-path", str(REFERENCE)],
    "analytics backfill": ["-m", "analytics", "backfill", "--reference-path", str(REFERENCE)],
    "ingest compact": ["-m", "ingest", "compact"],
    "ingest retain": ["-m", "ingest", "retain"],
    "run.py": ["run.py", "--embedded", "--requests", "1"],
}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """moto enforcing credentials after the three calls that make a user, its key and its
    policy; one bucket, and that user's keys."""
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    log = tmp_path_factory.mktemp("moto-auth") / "moto.log"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    moto = start_ready("moto", argv, log, port, ready_path="/moto-api/", env=env)
    endpoint = moto.url
    iam = boto3.client("iam", **_boto(endpoint, "x", "y"))
    iam.create_user(UserName="driftlake")
    key = iam.create_access_key(UserName="driftlake")["AccessKey"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }
    iam.put_user_policy(UserName="driftlake", PolicyName="s3", PolicyDocument=json.dumps(policy))
    bucket = new_bucket_name()
    boto3.client("s3", **_boto(endpoint, key["AccessKeyId"], key["SecretAccessKey"])).create_bucket(
        Bucket=bucket
    )
    yield endpoint, bucket, key["AccessKeyId"], key["SecretAccessKey"]
    moto.stop(10)


def _boto(endpoint: str, key: str, secret: str) -> dict[str, str]:
    return {
        "endpoint_url": endpoint,
        "aws_access_key_id": key,
        "aws_secret_access_key": secret,
        "region_name": "us-east-1",
    }


def keys_in(endpoint: str, bucket: str, key: str, secret: str) -> list[str]:
    s3 = boto3.client("s3", **_boto(endpoint, key, secret))
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("fault", ["missing bucket", "wrong secret", "unknown key"])
def test_a_broken_store_stops_each_command_at_start(guarded, command, fault):
    endpoint, bucket, key, secret = guarded
    env = aws_env(endpoint) | {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}
    target = bucket
    if fault == "missing bucket":
        target = new_bucket_name()
    elif fault == "wrong secret":
        env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
    else:
        env["AWS_ACCESS_KEY_ID"] = "AKIANOSUCHKEY0000000"
    url = f"s3://{target}/wh"
    argv = COMMANDS[command] + (["--warehouse", url] if command == "run.py" else [])
    proc = run_python(
        argv,
        env=driftlake_env(warehouse=url, dashboard_address="", n_workers=1) | env,
        timeout=60,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-2000:]
    assert "Traceback" not in out, out[-2000:]
    if fault == "missing bucket":
        assert f"bucket {target!r} does not exist" in out
    else:
        assert "rejected the credentials" in out and bucket in out
    assert keys_in(endpoint, bucket, key, secret) == []  # nothing written
