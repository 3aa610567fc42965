"""A local Ray cluster for the tests of the ``ray`` executor: ``ray.init`` with 2 CPUs on
loopback, no dashboard, its sessions and logs in a private temporary directory, started once per
test process (session scope) and shut down at the end. Ray's start-up costs 5-15 s on a loaded
2-core machine, so its tests share one xdist group (``@pytest.mark.xdist_group("ray")``) and
only one test worker pays it.

Workers are processes the raylet starts from this one's environment: ``PYTHONPATH`` is made to
lead with this checkout so they import the code under test, not another install of aikit."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = str(Path(__file__).resolve().parents[2])


START_ATTEMPTS = 3


def start_local_cluster(ray: Any, temp_dir: str) -> None:
    """``ray.init`` a 2-CPU loopback cluster in ``temp_dir``. Ray gives its raylet a fixed 30 s to
    register, which a machine running 8 test workers on 2 cores can exceed: then try again."""
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp_dir, _node_ip_address="127.0.0.1",
                     log_to_driver=False, logging_level="WARNING")
            return
        except Exception as exc:
            if "timed out during startup" not in str(exc) or attempt == START_ATTEMPTS:
                raise
            ray.shutdown()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """The ``ray`` module, connected to a fresh local cluster."""
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED")}
    saved_tmpdir = os.environ.get("TMPDIR")
    paths = [p for p in (os.environ.get("PYTHONPATH") or "").split(os.pathsep) if p and p != REPO]
    os.environ["PYTHONPATH"] = os.pathsep.join([REPO, *paths])
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a loopback-only cluster; no token written to ~/.ray
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray = pytest.importorskip("ray")
    temp_dir = tempfile.mkdtemp(prefix="aikit-ray-", dir="/tmp")  # short: Ray's socket paths must fit
    os.makedirs(os.path.join(temp_dir, "tmp"))
    os.environ["TMPDIR"] = os.path.join(temp_dir, "tmp")  # the raylet's, so its workers' scratch dirs go with it
    try:
        started = time.perf_counter()
        try:
            start_local_cluster(ray, temp_dir)
        except Exception as exc:
            pytest.fail(f"the local Ray cluster did not start in {time.perf_counter() - started:.0f} s "
                        f"({exc}); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        finally:
            if saved_tmpdir is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = saved_tmpdir
        yield ray
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(temp_dir, ignore_errors=True)
