"""Connecting to a Ray cluster: ``ray`` is imported here, on first use only."""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from ..errors import AikitError

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0  # how long an address may take to accept a TCP connection
_lock = threading.Lock()


class RayUnavailable(AikitError):
    """The Ray executor cannot be used: ray is not installed, or the cluster does not answer."""

    code = "ray_unavailable"


def import_ray() -> Any:
    """The ``ray`` module, or :class:`RayUnavailable` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailable("the Ray executor needs the ray package, which is not installed: "
                             "pip install 'aikit[ray]'", details={"error": str(exc)}) from None
    return ray


def connect(address: str | None = None, **init_options: Any) -> Any:
    """The ``ray`` module, connected: to the cluster already connected in this process, else to
    ``address`` (``host:port`` of a head started with ``ray start --head``, ``ray://host:port``
    for Ray Client, or ``auto``), else to ``$RAY_ADDRESS`` or a new local cluster. An address
    that does not accept a connection is a :class:`RayUnavailable` naming it and how to fix it,
    raised at once rather than after Ray's own retries."""
    ray = import_ray()
    with _lock:
        if ray.is_initialized():
            return ray
        address = (address or "").strip() or None
        if address is not None:
            probe(address)
        try:
            ray.init(address=address, logging_level=logging.WARNING, **init_options)
        except Exception as exc:
            where = f"the Ray cluster at {address!r}" if address else "a local Ray cluster"
            raise RayUnavailable(f"could not connect to {where}: {type(exc).__name__}: {exc}. "
                                 + _FIX, details={"address": address}) from None
    return ray


_FIX = ("Start a cluster with `ray start --head --port=6379` on the head machine, then set "
        "[ray] address = \"HOST:6379\" in aikit.toml (or pass --ray HOST:6379)")


def probe(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise :class:`RayUnavailable` unless ``address`` (``[ray://]host:port``) accepts a TCP
    connection within ``timeout_s``; other forms (``auto``, ``local``) are left to Ray."""
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        if address in ("auto", "local"):
            return
        raise RayUnavailable(f"the Ray address {address!r} is not HOST:PORT (or ray://HOST:PORT, auto, local). "
                             + _FIX, details={"address": address})
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, TimeoutError | socket.timeout):
            reason = f"no answer within {timeout_s:g} s"
        raise RayUnavailable(f"the Ray cluster at {address!r} does not answer ({reason}). " + _FIX,
                             details={"address": address}) from None
