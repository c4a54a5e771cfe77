"""Bad Ray input, caught before anything is written: one `error:` line naming it and the fix, exit 2."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from domainlm.assets import sample_corpus
from domainlm.errors import ConfigError, ResourceError
from domainlm.executors import check_executor
from domainlm.executors.ray_cluster import check_reachable, host_port


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # free again once closed: nothing listens there


def test_unreachable_address_cli_one_line_exit_2_nothing_written(tmp_path):
    address = f"127.0.0.1:{_closed_port()}"
    out = tmp_path / "curated"
    run = subprocess.run(
        [sys.executable, "-m", "domainlm", "curate", str(sample_corpus("finance")), "--out", str(out),
         "--executor", "ray", "--ray-address", address, "--quiet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --ray-address {address}: no Ray cluster answers")
    assert "ray start --head" in lines[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_address_forms():
    assert host_port("10.0.0.1:6379") == ("10.0.0.1", 6379)
    assert host_port("ray://head:10001") == ("head", 10001)
    assert host_port("auto") is None
    with pytest.raises(ResourceError, match=r"--ray-address head: expected HOST:PORT"):
        host_port("head")
    with pytest.raises(ResourceError, match=r"--ray-address 127\.0\.0\.1:\d+: no Ray cluster answers there"):
        check_reachable(f"127.0.0.1:{_closed_port()}")


def test_executor_names():
    assert check_executor("ray", "h:1") == "ray"
    with pytest.raises(ConfigError, match=r"--executor 'spark': unknown; use one of local, ray"):
        check_executor("spark")
    with pytest.raises(ConfigError, match=r"--ray-address h:1: given with --executor local"):
        check_executor("local", "h:1")


def test_unreachable_address_mix_exit_2_nothing_written(tmp_path):
    from domainlm.assets import reference_tokenizer
    from tests.mix import DATA_MIXES

    address = f"127.0.0.1:{_closed_port()}"
    out, cache = tmp_path / "mix", tmp_path / "tokens"
    run = subprocess.run(
        [sys.executable, "-m", "domainlm", "mix", str(DATA_MIXES / "finance_51_49.yaml"), "--out", str(out),
         "--tokenizer", str(reference_tokenizer("gpt2")), "--cache", str(cache),
         "--executor", "ray", "--ray-address", address, "--quiet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --ray-address {address}: no Ray cluster answers")
    assert list(tmp_path.iterdir()) == []  # neither the mix nor the token cache
