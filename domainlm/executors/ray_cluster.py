"""Connecting to a Ray cluster (checked before anything is written) and getting task results with
the same one-line errors as the local executor.

Ray is an optional dependency (`pip install 'domainlm[ray]'`), imported only here and by the
executors, so `domainlm --help` and the local path never load it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

from domainlm.errors import DomainLMError, ResourceError

_CONNECT_TIMEOUT_S = 5.0  # a TCP probe; Ray's own connect retries for ~60 s before failing
_FIX = (
    "start a cluster with `ray start --head --port=6379` on the head node and pass the HOST:PORT it "
    "prints, or drop --ray-address to start Ray on this machine"
)


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ResourceError(
            "--executor ray: Ray is not installed; pip install 'domainlm[ray]' (or pip install ray)"
        ) from exc
    return ray


def host_port(address: str) -> tuple[str, int] | None:
    """'10.0.0.1:6379' or 'ray://10.0.0.1:10001' -> (host, port); None for 'auto' and 'local'."""
    bare = address.split("://", 1)[1] if "://" in address else address
    if bare in ("auto", "local"):
        return None
    host, sep, port = bare.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ResourceError(
            f"--ray-address {address}: expected HOST:PORT (e.g. 10.0.0.1:6379), ray://HOST:PORT or auto; {_FIX}"
        )
    return host.strip("[]"), int(port)


def check_reachable(address: str) -> None:
    """A TCP connect to the head's port, so that a wrong address fails in seconds, in one line."""
    target = host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=_CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ResourceError(
            f"--ray-address {address}: no Ray cluster answers there ({reason}); {_FIX}"
        ) from None


@contextlib.contextmanager
def ray_cluster(address: str | None, runtime_env: dict[str, Any] | None = None) -> Iterator[Any]:
    """Connected Ray for the duration of a run; yields the `ray` module.

    `address` None: RAY_ADDRESS if set, else a Ray started on this machine for this run. A caller
    that connected already (a notebook, a test with its own runtime_env) keeps its connection.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        check_reachable(address)
    # Errors of tasks whose results were never fetched (the other tasks of a failed run) would
    # otherwise be printed as tracebacks after the one-line error.
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    try:
        ray.init(
            address=address,
            runtime_env=runtime_env,
            logging_level=logging.WARNING,
            log_to_driver=False,
            include_dashboard=False if not address else None,
        )
    except (ConnectionError, RuntimeError, TimeoutError, ValueError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise ResourceError(f"--ray-address {address}: could not connect ({detail}); {_FIX}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def get(ray: Any, refs: Any) -> Any:
    """ray.get, raising a task's DomainLMError as itself (the local path's one line, naming the file)."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, DomainLMError):
            raise type(cause)(str(cause)) from None
        raise


def cluster_cpus(ray: Any) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))
