"""docker-compose.s3.yml over docker-compose.yml holds the object-storage promises without an
engine: the warehouse is a bucket that exists before anyone uses it, no service mounts the
shared volume, MinIO needs credentials from the environment, and the stack stays hardened.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import ROOT
from harness.procs import driftlake_env, free_port, require_binary, start_ready, wait_until
from harness.s3 import MotoServer, new_bucket_name
from tests.integration import test_stack_config as stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

OVERRIDE = ROOT / "docker-compose.s3.yml"
USER, PASSWORD = "driftlake-test", "test-password-123"
# variables the two files read: none may leak in from the caller's environment
VARIABLES = {
    *stack.SWITCHES,
    "GRAFANA_ADMIN_PASSWORD",
    "DRIFTLAKE_BUCKET",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
}
# one-shot jobs: they run to completion before what depends on them; a restart policy would
# rerun them, and `up` fails on their failure instead
JOBS = {"minio-data-owner", "minio-bucket"}
# the only service that keeps a capability: it hands the (root-owned) minio-data volume to
# MinIO's user once, as root with CAP_CHOWN and no network, so MinIO itself runs non-root
CHOWNER = "minio-data-owner"
# where each service writes once the warehouse is a bucket
WRITABLE = {
    **stack.WRITABLE,
    "model-server": {"/tmp"},
    "analytics": {"/tmp"},
    "dask-worker": {"/tmp"},
    "minio": {"/data", "/tmp"},
    "minio-bucket": {"/tmp"},
    CHOWNER: {"/data"},
}


def compose_s3_config(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    """``docker-compose -f docker-compose.yml -f docker-compose.s3.yml config`` with an empty
    env file and only ``variables`` of the stack's own set."""
    binary = require_binary("docker-compose")
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env.update(variables)
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    files = ["-f", str(stack.COMPOSE), "-f", str(OVERRIDE)]
    return subprocess.run(
        [binary, *files, "--env-file", str(env_file), "config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def loaded(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


REQUIRED = {
    "GRAFANA_ADMIN_PASSWORD": "pw",
    "MINIO_ROOT_USER": USER,
    "MINIO_ROOT_PASSWORD": PASSWORD,
}


@pytest.fixture(scope="module")
def merged(tmp_path_factory) -> dict[str, Any]:
    """The stack on object storage, as docker-compose merges and resolves the two files."""
    return loaded(compose_s3_config(tmp_path_factory.mktemp("compose"), **REQUIRED))


@pytest.fixture(scope="module")
def store_users(tmp_path_factory) -> set[str]:
    """The services that mount the shared warehouse in docker-compose.yml: those that read or
    write the warehouse, so the ones that need the store."""
    result = stack.compose_config(tmp_path_factory.mktemp("base"), "pw")
    base = loaded(result)["services"]
    users = {
        name
        for name, svc in base.items()
        if any(str(v).startswith("warehouse:") for v in svc.get("volumes", []))
    }
    assert users == {"model-server", "analytics", "dask-worker"}
    return users


def mounts_warehouse_volume(volume: str | dict[str, Any]) -> bool:
    if isinstance(volume, dict):
        return volume.get("type") == "volume" and volume.get("source") == "warehouse"
    return str(volume).split(":")[0] == "warehouse"


def test_the_store_services_run_minio_and_create_the_bucket(merged):
    s = merged["services"]
    minio = s["minio"]
    image, tag = minio["image"].rsplit(":", 1)
    assert image.endswith("minio/minio") and tag.startswith("RELEASE."), minio["image"]
    assert minio["command"] == ["server", "/data", "--console-address", ":9001"]
    assert minio["healthcheck"]["test"][0] == "CMD"
    assert "minio-data:/data:rw" in minio["volumes"]
    job = s["minio-bucket"]
    image, tag = job["image"].rsplit(":", 1)
    assert image.endswith("minio/mc") and tag.startswith("RELEASE."), job["image"]
    # `config` writes a literal $ as $$ (its output is a compose file again)
    script = " ".join(job["entrypoint"]).replace("$$", "$")
    assert 'mc alias set store http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"' in (
        script
    )
    assert 'mc mb --ignore-existing "store/$DRIFTLAKE_BUCKET"' in script
    assert job["environment"]["DRIFTLAKE_BUCKET"] == "driftlake"
    assert job["environment"]["MC_CONFIG_DIR"].startswith("/tmp/")
    owner = s[CHOWNER]
    assert owner["entrypoint"] == ["chown", minio["user"], "/data"]
    assert "minio-data:/data:rw" in owner["volumes"]
    assert "minio-data" in merged["volumes"]


def test_no_service_mounts_the_warehouse_volume(merged, store_users):
    for name, svc in merged["services"].items():
        assert not [v for v in svc.get("volumes", []) if mounts_warehouse_volume(v)], name
    for name in store_users:
        # what replaced the mount: an empty tmpfs nobody can write
        [placeholder] = [v for v in merged["services"][name]["volumes"] if isinstance(v, dict)]
        assert placeholder == {"type": "tmpfs", "target": "/warehouse", "read_only": True}


def test_every_warehouse_user_has_the_bucket_and_the_endpoint(merged, store_users):
    s = merged["services"]
    with_warehouse = {
        n for n, svc in s.items() if "DRIFTLAKE_WAREHOUSE" in svc.get("environment", {})
    }
    assert store_users < with_warehouse
    for name in with_warehouse:
        assert s[name]["environment"]["DRIFTLAKE_WAREHOUSE"] == "s3://driftlake/warehouse", name
    for name in store_users:
        env = s[name]["environment"]
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000", name
        assert env["AWS_ACCESS_KEY_ID"] == USER == s["minio"]["environment"]["MINIO_ROOT_USER"]
        assert env["AWS_SECRET_ACCESS_KEY"] == PASSWORD
        assert env["AWS_REGION"]
        assert "minio" in stack.reachable_from(merged, name), f"{name} cannot reach minio"
    # the scheduler runs any code a client sends and reads no data: no keys, no way to MinIO
    scheduler = s["dask-scheduler"]
    assert not [k for k in scheduler["environment"] if k.startswith("AWS_")]
    assert "minio" not in stack.reachable_from(merged, "dask-scheduler")
    # a --warehouse flag would win over DRIFTLAKE_WAREHOUSE: no command may carry one
    for name, svc in s.items():
        argv = [str(a) for a in [*(svc.get("entrypoint") or []), *(svc.get("command") or [])]]
        assert not [a for a in argv if a.startswith("--warehouse")], (name, argv)


def test_the_bucket_name_comes_from_driftlake_bucket(tmp_path):
    s = loaded(compose_s3_config(tmp_path, **REQUIRED, DRIFTLAKE_BUCKET="other-bucket"))
    s = s["services"]
    assert s["minio-bucket"]["environment"]["DRIFTLAKE_BUCKET"] == "other-bucket"
    for name in ("model-server", "analytics", "dask-worker", "dask-scheduler"):
        assert s[name]["environment"]["DRIFTLAKE_WAREHOUSE"] == "s3://other-bucket/warehouse"


def test_the_bucket_exists_before_any_service_uses_it(merged, store_users):
    s = merged["services"]

    def waits_for(name: str, dependency: str, condition: str) -> bool:
        return s[name].get("depends_on", {}).get(dependency, {}).get("condition") == condition

    for name in store_users:
        assert waits_for(name, "minio-bucket", "service_completed_successfully"), name
    assert waits_for("minio-bucket", "minio", "service_healthy")
    assert waits_for("minio", CHOWNER, "service_completed_successfully")
    # docker-compose.yml's own dependencies are kept beside the new one
    assert waits_for("analytics", "dask-scheduler", "service_healthy")
    assert waits_for("analytics", "pushgateway", "service_healthy")
    assert waits_for("dask-worker", "dask-scheduler", "service_healthy")
    assert waits_for("gateway", "model-server", "service_healthy")


@pytest.mark.parametrize("missing", ["MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"])
def test_minio_credentials_are_required_with_a_helpful_message(tmp_path, missing):
    variables = {k: v for k, v in REQUIRED.items() if k != missing}
    result = compose_s3_config(tmp_path, **variables)
    assert result.returncode != 0
    assert f"set {missing} (" in result.stderr, result.stderr
    # an empty value is refused the same way
    result = compose_s3_config(tmp_path, **variables, **{missing: ""})
    assert result.returncode != 0
    assert f"set {missing} (" in result.stderr, result.stderr


def test_every_service_stays_without_capabilities_and_privileges(merged):
    for name, svc in merged["services"].items():
        assert svc.get("cap_drop") == ["ALL"], name
        assert svc.get("cap_add", []) == (["CHOWN"] if name == CHOWNER else []), name
        assert "no-new-privileges:true" in svc.get("security_opt", []), name
        assert not svc.get("privileged"), name
    owner = merged["services"][CHOWNER]
    assert owner["network_mode"] == "none"  # root with CHOWN, and nothing to talk to
    assert owner["user"] == "0:0"


def test_every_root_filesystem_is_read_only_and_writes_go_where_meant(merged):
    services = merged["services"]
    assert set(services) == set(WRITABLE)
    for name, svc in services.items():
        assert svc.get("read_only") is True, name
        assert stack.writable(svc) == WRITABLE[name], name


def test_the_store_runs_as_a_user_of_its_own(merged):
    s = merged["services"]
    uid = s["minio"]["user"].split(":")[0]
    assert uid not in ("", "0", "root")
    assert s["minio-bucket"]["user"].split(":")[0] not in ("", "0", "root")
    # not the driftlake image's user (Dockerfile): a container of one can't write the other's
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"--uid {uid} " not in dockerfile


def test_restart_policies_and_healthchecks(merged):
    for name, svc in merged["services"].items():
        if name in JOBS:
            assert svc.get("restart") == "no", name
            assert "healthcheck" not in svc, name
        else:
            assert svc.get("restart") in ("unless-stopped", "always", "on-failure"), name
    test = merged["services"]["minio"]["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL")


def test_the_store_is_reachable_only_by_the_services_that_use_it(merged, store_users):
    networks = merged["networks"]
    members = stack.network_members(merged)
    assert "default" not in members, "a service without networks: joins the default one"
    assert stack.reachable_from(merged, "minio") == store_users | {"minio-bucket"}
    for net in merged["services"]["minio"]["networks"]:
        assert networks[net].get("internal") is True, net
    # MinIO publishes nothing, and the ports of docker-compose.yml are unchanged
    assert not stack.published(merged["services"]["minio"])
    stack.test_private_ports_are_never_published_beyond_loopback(merged)
    stack.test_scalable_services_have_no_fixed_name_or_host_port(merged)
    # the scheduler, the Pushgateway and the model servers stay as closed as without S3
    stack.test_scheduler_and_pushgateway_are_reachable_only_by_the_services_that_use_them(merged)


@pytest.mark.timeout(120)
def test_a_replica_with_the_merged_settings_stores_into_the_bucket(tmp_path, moto: MotoServer):
    """The variables compose gives a replica are the ones driftlake reads: the model-server's
    command and environment of the merged config, run natively with only addresses
    substituted (MinIO -> moto's S3 on loopback, the listen address -> loopback)."""
    bucket = new_bucket_name("driftlake")
    merged = loaded(compose_s3_config(tmp_path, **REQUIRED, DRIFTLAKE_BUCKET=bucket))
    service = merged["services"]["model-server"]
    env = {k: v for k, v in driftlake_env().items() if not k.startswith("AWS_")}
    env |= {**service["environment"], "AWS_ENDPOINT_URL": moto.endpoint}  # http: allowed as is
    port = free_port()
    argv = [sys.executable if a == "python" else a for a in service["command"]]
    argv[argv.index("0.0.0.0")] = "127.0.0.1"
    argv[argv.index("8000")] = str(port)
    # without the bucket job's bucket a replica refuses to start
    refused = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert bucket in refused.stderr, refused.stderr
    moto.create_bucket(bucket)
    server = start_ready("model-server", argv, tmp_path / "server.log", port, env=env)
    try:
        # the default model is trained at the first start and cached in the warehouse
        keys = wait_until(lambda: moto.keys(bucket), timeout=30)
    finally:
        server.stop()
    assert keys and all(k.startswith("warehouse/") for k in keys), keys
