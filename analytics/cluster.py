"""Connecting to Dask: a configured scheduler, or a local cluster of worker processes."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from distributed import Client, LocalCluster

from analytics.settings import AnalyticsSettings

log = logging.getLogger("driftlake.analytics.cluster")


@contextmanager
def dask_client(settings: AnalyticsSettings) -> Iterator[Client]:
    """Yield a client of ``settings.scheduler``, or of a new local cluster, and close it after.

    The local cluster runs ``n_workers`` worker processes with ``threads_per_worker`` threads
    each and caps Polars at ``polars_max_threads`` so worker threads x Polars threads fit the
    cores instead of oversubscribing them.
    """
    if settings.scheduler:
        client = Client(settings.scheduler, timeout="30s")
        log.info("event=dask_connected scheduler=%s", settings.scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    os.environ.setdefault("POLARS_MAX_THREADS", str(settings.polars_max_threads))
    cluster = LocalCluster(
        n_workers=settings.n_workers,
        threads_per_worker=settings.threads_per_worker,
        processes=True,
        host="127.0.0.1",
        # with no dashboard, the scheduler's HTTP server (/metrics) still needs a port:
        # a random one, so it never collides with another cluster's 8787
        dashboard_address=settings.dashboard_address or "127.0.0.1:0",
        scheduler_kwargs={"dashboard": bool(settings.dashboard_address)},
        env={"POLARS_MAX_THREADS": str(settings.polars_max_threads)},
        silence_logs=logging.ERROR,
    )
    client = Client(cluster)
    log.info(
        "event=dask_local_cluster workers=%d threads=%d dashboard=%s",
        settings.n_workers,
        settings.threads_per_worker,
        cluster.dashboard_link if settings.dashboard_address else "off",
    )
    try:
        yield client
    finally:
        client.close()
        cluster.close()
