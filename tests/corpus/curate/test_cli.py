import gzip
import json
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from domainlm.assets import sample_corpus
from domainlm.cli.curate import register
from domainlm.corpus import CorpusReader
from domainlm.corpus.curate import CurateConfig, curate, parse_corpus_args

from .conftest import write_jsonl


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "domainlm", "curate", *args], capture_output=True, text=True, timeout=120
    )


def _invoke(*args):
    """In-process run of the curate command alone (the subprocess test covers the real entry point)."""
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command keeps `curate` a named subcommand
    return CliRunner().invoke(app, ["curate", *args])


def test_bad_config_exits_2_without_traceback(tmp_path, paragraphs):
    corpus = write_jsonl(tmp_path / "c.jsonl", paragraphs[:2])
    result = _cli(str(corpus), "--out", str(tmp_path / "out"), "--set", "near_dedup.threshold=1.2")
    assert result.returncode == 2
    assert result.stderr == ("error: --set: near_dedup.threshold: Input should be less than or equal to 1\n")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (
            ["--set", "filters.rules.spam_score.enabled=true"],
            "filters.rules: Value error, unknown rule(s) spam_score",
        ),
        (
            ["--set", "near_dedup.threshold=-1"],
            "near_dedup.threshold: Input should be greater than or equal to 0",
        ),
        (["--workers", "-1"], "--workers -1: must be at least 1"),
        (["--shards", "-2"], "--shards -2: must be 0"),
    ],
)
def test_bad_flags_raise_config_errors_before_work(tmp_path, paragraphs, flags, error):
    corpus = write_jsonl(tmp_path / "c.jsonl", paragraphs[:2])
    result = _invoke(str(corpus), "--out", str(tmp_path / "out"), *flags)
    assert type(result.exception).__name__ == "ConfigError" and error in str(result.exception)
    assert not (tmp_path / "out").exists()


def test_missing_out_and_existing_out(tmp_path, paragraphs):
    corpus = write_jsonl(tmp_path / "c.jsonl", paragraphs[:2])
    assert "--out is required" in str(_invoke(str(corpus)).exception)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")  # an empty folder may be used; a full one may not
    assert "already exists" in str(_invoke(str(corpus), "--out", str(tmp_path / "out")).exception)


def test_cli_json_run_writes_corpus_and_report(tmp_path, paragraphs):
    corpus = write_jsonl(tmp_path / "notes.jsonl", paragraphs[:4] + paragraphs[:1])
    result = _invoke(str(corpus), "--out", str(tmp_path / "out"), "--json", "--quiet", "--workers", "1")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["totals"]["docs_in"] == 5 and report["totals"]["docs_kept"] == 4
    assert report["run"]["docs_per_s"] > 0
    assert [d.text for d in CorpusReader(tmp_path / "out" / "notes.jsonl.gz")] == paragraphs[:4]
    assert "run" not in json.loads((tmp_path / "out" / "report.json").read_text())


def test_cli_dry_run_table(tmp_path, paragraphs):
    corpus = write_jsonl(tmp_path / "notes.jsonl", paragraphs[:3])
    result = _invoke(str(corpus), "--dry-run", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "near_dedup" in result.stdout and "dry run: nothing written" in result.stdout


def _sample(domain, limit):
    with gzip.open(sample_corpus(domain), "rt", encoding="utf-8") as handle:
        return [json.loads(line)["text"] for _, line in zip(range(limit), handle, strict=False)]


@pytest.mark.slow  # ~300k words of real text through every stage
def test_defaults_keep_clean_domain_text(tmp_path):
    """Austen chapters all survive; ICD-10-CM blocks (repetitive tables) mostly do; of the first SPDX
    licenses, the near-identical versions of one license are folded."""
    icd = [t for t in _sample("medical", 682) if t[0].isupper() and t[1:3].isdigit()][:40]
    austen = _sample("general", 20)
    spdx = _sample("legal", 12)
    paths = [
        f"austen={write_jsonl(tmp_path / 'austen.jsonl', austen)}",
        f"icd={write_jsonl(tmp_path / 'icd.jsonl', icd)}",
        f"spdx={write_jsonl(tmp_path / 'spdx.jsonl', spdx)}",
    ]
    report = curate(parse_corpus_args(paths), CurateConfig(), dry_run=True).report
    kept = {s["source"]: s["kept_fraction_docs"] for s in report["sources"]}
    assert kept["austen"] == 1.0
    assert kept["icd"] >= 0.75
    near = next(s for s in report["stages"] if s["stage"] == "near_dedup")
    assert near["docs_removed"] >= 1 and all(e["source"] == "spdx" for e in near["examples"])
