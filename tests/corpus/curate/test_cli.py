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


def _debian_copyright(package: str, stanzas: int) -> str:
    """A machine-readable Debian copyright file (DEP-5): one stanza per file glob, each repeating
    the same Copyright and License lines, which is what trips `duplicate_lines`."""
    lines = [
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/",
        f"Upstream-Name: {package}",
        f"Source: https://example.org/{package}",
        "",
    ]
    for k in range(stanzas):
        lines += [
            f"Files: src/{package}/module{k}/*",
            f"Copyright: 2004-2010 The {package} developers",
            "License: GPL-2+",
            "",
        ]
    lines += [
        "License: GPL-2+",
        " This program is free software; you can redistribute it and/or modify it under the terms of",
        " the GNU General Public License as published by the Free Software Foundation; either version 2",
        " of the License, or (at your option) any later version.",
        " .",
        " This program is distributed in the hope that it will be useful, but WITHOUT ANY WARRANTY;",
        " without even the implied warranty of MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.",
        " .",
        " On Debian systems, the full text of the GNU General Public License version 2 can be found",
        " in the file `/usr/share/common-licenses/GPL-2'.",
    ]
    return "\n".join(lines)


def test_words_kept_per_source_and_rule_and_the_per_source_switch(tmp_path, paragraphs):
    """The README's domain caveat: `duplicate_lines` removes Debian copyright files; the words table
    shows it in that source's column, and `source_filters.debian...enabled=false` fixes it."""
    debian = write_jsonl(tmp_path / "debian.jsonl", [_debian_copyright(p, 10) for p in ("foo", "bar", "baz")])
    prose = write_jsonl(tmp_path / "prose.jsonl", paragraphs[:4])
    args = [str(prose), str(debian), "--workers", "1", "--set", "near_dedup.enabled=false"]
    result = _invoke(*args, "--out", str(tmp_path / "a"))
    assert result.exit_code == 0, result.output
    assert "Words kept per source" in result.stdout
    # The last duplicate_lines row is the words table's (the first is the stage/rule table's).
    row = [line for line in result.stdout.splitlines() if line.strip().startswith("duplicate_lines")][-1]
    assert row.split()[1:] == ["100.0%", "0.0%"]  # prose, debian: the rule took every Debian word
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    debian_words = report["sources"][1]["words_in"]
    rules = {r["rule"]: r for r in report["sources"][1]["stages"][2]["rules"]}
    assert rules["duplicate_lines"]["words_removed"] == debian_words == rules["duplicate_lines"]["words_in"]
    markdown = (tmp_path / "a" / "report.md").read_text()
    assert "## Words kept per source, by stage and rule" in markdown
    assert f"| &nbsp;&nbsp;duplicate_lines | {report['sources'][0]['words_in']:,} / " in markdown
    assert f"| 0 / {debian_words:,} (0.0%) |" in markdown
    fixed = _invoke(
        *args,
        "--out",
        str(tmp_path / "b"),
        "--set",
        "source_filters.debian.rules.duplicate_lines.enabled=false",
    )
    assert fixed.exit_code == 0, fixed.output
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert [s["kept_fraction_words"] for s in report["sources"]] == [1.0, 1.0]


def test_reference_flag_resolves_against_cwd_and_removes_the_copy(tmp_path, paragraphs, monkeypatch):
    corpus = write_jsonl(tmp_path / "c.jsonl", paragraphs[:4])
    write_jsonl(tmp_path / "eval.jsonl", [paragraphs[2]])
    monkeypatch.chdir(tmp_path)
    result = _invoke(str(corpus), "--dry-run", "--json", "--workers", "1", "--reference", "eval.jsonl")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    stage = next(s for s in report["stages"] if s["stage"] == "decontaminate")
    assert stage["docs_removed"] == 1 and stage["references"][0]["path"] == str(tmp_path / "eval.jsonl")
    assert stage["examples"][0]["id"] == "c.jsonl:3"
    assert report["config"]["decontaminate"]["references"] == [str(tmp_path / "eval.jsonl")]
