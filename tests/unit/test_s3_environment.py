"""The S3 client's configuration comes from the standard AWS environment, profiles included."""

from __future__ import annotations

import pytest

from ingest import ConfigError, Warehouse
from ingest._s3_store import s3_environment

pytestmark = pytest.mark.unit

AWS = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
)


@pytest.fixture(autouse=True)
def clean_aws(monkeypatch, tmp_path):
    for name in AWS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))


def test_the_s3_specific_endpoint_wins_and_http_is_allowed(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://generic.example")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://minio:9000/")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    options = s3_environment()
    assert options["aws_endpoint_url"] == "http://minio:9000"
    assert options["aws_allow_http"] == "true"
    assert options["aws_region"] == "eu-west-1"
    assert "aws_access_key_id" not in options  # no keys: the instance's role is used


def test_keys_from_the_environment_win_over_a_profile(monkeypatch, tmp_path):
    (tmp_path / "credentials").write_text(
        "[team]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = fromfile\n"
    )
    monkeypatch.setenv("AWS_PROFILE", "team")
    options = s3_environment()
    assert (options["aws_access_key_id"], options["aws_secret_access_key"]) == (
        "AKIAPROFILE",
        "fromfile",
    )
    assert "aws_endpoint_url" not in options and options["aws_region"] == "us-east-1"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fromenv")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token")
    options = s3_environment()
    assert (options["aws_access_key_id"], options["aws_session_token"]) == ("AKIAENV", "token")


def test_an_unknown_profile_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "nobody")
    with pytest.raises(ConfigError, match="AWS profile 'nobody' is unusable"):
        s3_environment()


@pytest.mark.parametrize(
    "url", ["s3://Bad_Bucket/wh", "s3:///wh", "s3://ok-bucket/../wh", "s3://ok-bucket/a//b"]
)
def test_a_bad_bucket_or_prefix_is_refused_before_any_request(url):
    with pytest.raises(ConfigError, match="warehouse URL"):
        Warehouse(url)
