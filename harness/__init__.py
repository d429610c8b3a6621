"""The development harness shared by tests/, bench/ and docs/: never shipped, never imported by
serving, ingest or analytics.

- ``procs``: free loopback ports, readiness polls with a deadline, starting and stopping a child
  process with its log.
- ``stubs``: stand-in HTTP servers (webhook receivers, fake replicas) served from a thread.
- ``servers``: ``python -m serving`` replicas and the clients that send them rows.
- ``landing``: fill a landing zone directly through the real capture writer; plan its window.
- ``nginx``, ``prometheus``, ``alertmanager``, ``dns_stub``: the stack's own binaries, natively
  on loopback with the repository's configs.
- ``netns``: hosts on a private network of Linux network namespaces (root only), for services
  that must run on distinct addresses.
- ``fullstack``, ``dashboard``: all of it together, and the Grafana dashboard's queries.
- ``settings``: the settings classes' fields as the environment and the command line see them.
- ``s3``, ``fault_proxy``: moto's S3 server on loopback, its buckets and the AWS environment
  that reaches it; a proxy in front of it that answers 503 SlowDown, resets or stalls requests.
- ``multihost``: every service on its own namespace host over an s3:// warehouse, a worker
  joining and one killed mid-stream (``python -m harness.multihost``, as root).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "reference.parquet"
MODEL = "breast_cancer"  # the bundled reference's model name (serving's default)

__all__ = ["MODEL", "REFERENCE", "ROOT"]
