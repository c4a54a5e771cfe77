import json
import os
import signal
import subprocess
import sys
import time

import pytest
import typer
from typer.testing import CliRunner

from domainlm.cli import mix as mix_cli
from tests.mix import DATA_MIXES
from tests.mix.conftest import GPT2

REPO = DATA_MIXES.parent


def _app() -> typer.Typer:
    app = typer.Typer()
    mix_cli.register(app)

    @app.callback()
    def _root() -> None:  # keeps `mix` a subcommand, as in the real app
        pass

    return app


def _small_yaml(small_corpora, tmp_path, extra=""):
    path = tmp_path / "small.yaml"
    path.write_text(
        f"sources:\n  fin: {{paths: {small_corpora / 'fin.jsonl'}, ratio: 0.6, max_repeats: 3}}\n"
        f"  gen: {{paths: {small_corpora / 'gen.jsonl'}, ratio: 0.4}}\n"
        f"seq_len: 64\nval_fraction: 0.2\ntokenizer: {GPT2}\n{extra}"
    )
    return path


def _run(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "domainlm", "mix", *map(str, args)],
        capture_output=True, text=True, timeout=300, cwd=REPO, **kwargs,
    )  # fmt: skip


def test_dry_run_prints_the_table_and_writes_nothing(small_corpora, tmp_path):
    config = _small_yaml(small_corpora, tmp_path)
    result = CliRunner().invoke(_app(), ["mix", str(config), "--dry-run", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "mix allocation (dry run)" in result.output
    assert "fin" in result.output and "0.6000" in result.output
    assert not (tmp_path / "o").exists()


def test_json_summary_and_flags(small_corpora, tmp_path):
    config = _small_yaml(small_corpora, tmp_path)
    args = [
        "mix",
        str(config),
        "--out",
        str(tmp_path / "o"),
        "--json",
        "--seed",
        "4",
        "--total-tokens",
        "6400",
    ]
    result = CliRunner().invoke(
        _app(), [*args, "--set", "sources.fin.ratio=0.5", "--set", "sources.gen.ratio=0.5"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["num_sequences"] == 100  # 6400 tokens / seq_len 64
    assert [s["tokens_taken"] for s in summary["sources"]] == [3200, 3200]
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["seed"] == 4 and manifest["fingerprint"] == summary["fingerprint"]


@pytest.mark.parametrize(
    ("extra_args", "expected"),
    [
        (["--set", "sources.fin.ratio=0.7"], "ratios sum to 1.1"),
        (
            ["--set", "sources.fin.ratio=-0.6", "--set", "sources.gen.ratio=1.6"],
            "sources.fin.ratio: -0.6 is negative",
        ),
        (["--tokenizer", "no/such/dir"], "tokenizer"),
        (["--total-tokens", "10M"], "tokens missing"),
    ],
)
def test_bad_input_exits_2_with_one_line(small_corpora, tmp_path, extra_args, expected):
    config = _small_yaml(small_corpora, tmp_path)
    result = _run(config, "--out", tmp_path / "o", "--quiet", *extra_args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert expected in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_killed_run_leaves_nothing_complete_and_rerun_is_clean(tmp_path):
    out = tmp_path / "mix"
    args = ["data_mixes/finance_51_49.yaml", "--out", out, "--seq-len", "128", "--quiet"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "domainlm", "mix", *map(str, args)], cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        started = [p for p in tmp_path.glob(".mix.tmp-*/.work/*.train.bin") if p.stat().st_size > 0]
        if started:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)  # mid-tokenization: no cleanup code runs
    proc.wait()
    assert not out.exists()
    leftovers = list(tmp_path.glob(".mix.tmp-*"))
    assert leftovers and not any((p / "manifest.json").exists() for p in leftovers)
    rerun = _run(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert (out / "manifest.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["mix"]  # the killed run's temp dir is gone


def test_skipped_input_is_reported(small_corpora, tmp_path):
    corpus = tmp_path / "fin.jsonl"
    corpus.write_text((small_corpora / "fin.jsonl").read_text() + "{broken\n")
    config = (
        _small_yaml(small_corpora, tmp_path)
        .read_text()
        .replace(str(small_corpora / "fin.jsonl"), str(corpus))
    )
    (tmp_path / "small.yaml").write_text(config)
    args = ["mix", str(tmp_path / "small.yaml"), "--dry-run"]
    table = CliRunner().invoke(_app(), args)
    assert table.exit_code == 0, table.output
    assert "warning: fin: skipped 1 malformed lines (--strict makes this an error)" in table.stderr
    summary = json.loads(CliRunner().invoke(_app(), [*args, "--json"]).stdout)
    assert summary["sources"][0]["skipped"] == {"malformed_lines": 1}
    assert summary["dry_run"] is True and summary["fingerprint"] is None
