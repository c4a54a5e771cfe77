"""Where per-document work runs: `local` (this machine's process pool, the reference) or `ray`
(tasks on a Ray cluster, the engine NeMo-Curator and datatrove's Ray executor use)."""

from __future__ import annotations

from domainlm.errors import ConfigError

EXECUTORS = ("local", "ray")


def check_executor(name: str, ray_address: str | None = None) -> str:
    """The executor name, validated; --ray-address only makes sense with --executor ray."""
    if name not in EXECUTORS:
        raise ConfigError(f"--executor {name!r}: unknown; use one of {', '.join(EXECUTORS)}")
    if ray_address and name != "ray":
        raise ConfigError(
            f"--ray-address {ray_address}: given with --executor {name}; add --executor ray or drop the address"
        )
    return name
