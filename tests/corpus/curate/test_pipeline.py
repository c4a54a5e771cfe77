import gzip
import json

import pytest

from domainlm.corpus import CorpusReader
from domainlm.corpus.curate import CurateConfig, curate, parse_corpus_args
from domainlm.errors import ConfigError, DataError
from domainlm.outputs import MARKER_NAME


def _run(path, tmp_path, name="out", **kwargs):
    specs = parse_corpus_args([str(path)])
    return curate(specs, kwargs.pop("config", CurateConfig()), out=tmp_path / name, **kwargs)


def _removed(out):
    with gzip.open(out / "removed.jsonl.gz", "rt") as handle:
        return [json.loads(line) for line in handle]


def test_removals_are_the_expected_documents(dirty_corpus, tmp_path):
    path, expected, _ = dirty_corpus
    _run(path, tmp_path)
    removed = {int(r["id"].rsplit(":", 1)[1]): r for r in _removed(tmp_path / "out")}
    assert {line: r["rule"] or r["stage"] for line, r in removed.items()} == expected
    assert removed[13]["duplicate_of"] == f"{path.name}:1"  # ids name the file as given
    assert removed[14]["duplicate_of"] == f"{path.name}:4"
    assert removed[15]["duplicate_of"] == f"{path.name}:6"
    assert removed[15]["detail"].startswith("estimated Jaccard 0.")


def test_report_counts_add_up(dirty_corpus, tmp_path):
    path, _, clean = dirty_corpus
    report = _run(path, tmp_path).report
    stages = {s["stage"]: s for s in report["stages"]}
    assert list(stages) == ["normalize", "exact_dedup", "filters", "near_dedup"]
    chain = list(stages.values())
    assert chain[0]["docs_in"] == 17 and chain[0]["words_in"] == report["totals"]["words_in"]
    for before, after in zip(chain, chain[1:], strict=False):
        assert before["docs_kept"] == after["docs_in"] and before["words_kept"] == after["words_in"]
    for entry in chain + stages["filters"]["rules"]:
        assert entry["docs_in"] == entry["docs_removed"] + entry["docs_kept"]
        assert entry["words_in"] == entry["words_removed"] + entry["words_kept"]
    rules = stages["filters"]["rules"]
    for before, after in zip(rules, rules[1:], strict=False):
        assert before["docs_kept"] == after["docs_in"]
    assert sum(r["docs_removed"] for r in rules) == stages["filters"]["docs_removed"] == 2
    assert [stages[s]["docs_removed"] for s in stages] == [0, 2, 2, 1]
    assert report["totals"]["docs_kept"] == chain[-1]["docs_kept"] == 12
    assert report["totals"]["kept_fraction_docs"] == round(12 / 17, 6)
    assert report["sources"][0]["source"] == "dirty"
    example = stages["exact_dedup"]["examples"][0]
    assert example["id"].endswith(":13") and example["text"].startswith("She was the youngest")


def test_output_feeds_the_corpus_reader_with_ids_and_sources(dirty_corpus, tmp_path):
    path, _, clean = dirty_corpus
    result = _run(path, tmp_path)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        MARKER_NAME,
        "dirty.jsonl.gz",
        "removed.jsonl.gz",
        "report.json",
        "report.md",
    ]
    docs = list(CorpusReader(out / "dirty.jsonl.gz"))
    assert [d.text for d in docs] == clean
    with gzip.open(out / "dirty.jsonl.gz", "rt") as handle:
        records = [json.loads(line) for line in handle]
    assert [r["id"] for r in records] == [f"dirty.jsonl.gz:{i}" for i in range(1, 13)]
    assert {r["source"] for r in records} == {"dirty"}
    assert result.report["outputs"][0]["documents"] == 12
    assert json.loads((out / "report.json").read_text()) == result.report
    assert "| **near_dedup** | 13 | 1 | 12 |" in (out / "report.md").read_text()


def test_dry_run_writes_nothing(dirty_corpus, tmp_path):
    path, _, clean = dirty_corpus
    result = curate(parse_corpus_args([str(path)]), CurateConfig(), out=tmp_path / "out", dry_run=True)
    assert not (tmp_path / "out").exists()
    assert result.report["totals"]["docs_kept"] == 12 and result.report["outputs"] is None


def test_stages_can_be_switched_off(dirty_corpus, tmp_path):
    path, _, clean = dirty_corpus
    config = CurateConfig(
        exact_dedup={"enabled": False}, near_dedup={"enabled": False}, filters={"enabled": False}
    )
    report = curate(parse_corpus_args([str(path)]), config, dry_run=True).report
    assert [s["stage"] for s in report["stages"]] == ["normalize"]
    assert report["totals"]["docs_kept"] == 17


def test_redaction_applies_to_kept_text(tmp_path, paragraphs):
    from .conftest import write_jsonl

    path = write_jsonl(tmp_path / "pii.jsonl", [paragraphs[0] + " Mail jane@example.com or 10.1.2.3 now."])
    config = CurateConfig(redact={"enabled": True})
    result = _run(path, tmp_path, config=config)
    (doc,) = CorpusReader(tmp_path / "out" / "pii.jsonl.gz")
    assert doc.text.endswith("Mail <EMAIL> or <IP_ADDRESS> now.")
    redact = result.report["stages"][-1]
    assert redact["stage"] == "redact"
    assert redact["redactions"] == {"emails": 1, "ip_addresses": 1, "phones": 0, "documents_changed": 1}


def test_cross_corpus_duplicates_keep_the_first_corpus(tmp_path, paragraphs):
    from .conftest import write_jsonl

    a = write_jsonl(tmp_path / "a.jsonl", paragraphs[:3])
    b = write_jsonl(tmp_path / "b.jsonl", [paragraphs[1], paragraphs[5]])
    report = curate(parse_corpus_args([str(a), f"second={b}"]), CurateConfig(), out=tmp_path / "o").report
    assert [(s["source"], s["docs_kept"]) for s in report["sources"]] == [("a", 3), ("second", 1)]
    assert (tmp_path / "o" / "second.jsonl.gz").exists()


def test_bad_inputs_fail_before_work(tmp_path, dirty_corpus):
    path, _, clean = dirty_corpus
    with pytest.raises(DataError, match="no such file or directory"):
        parse_corpus_args([str(tmp_path / "missing.jsonl")])
    with pytest.raises(ConfigError, match="given more than once"):
        parse_corpus_args([str(path), str(path)])
    (tmp_path / "exists").mkdir()
    (tmp_path / "exists" / "keep.txt").write_text("x")  # an empty folder may be used; a full one may not
    with pytest.raises(ConfigError, match="already exists"):
        _run(path, tmp_path, name="exists")
    with pytest.raises(ConfigError, match="--out is required"):
        curate(parse_corpus_args([str(path)]), CurateConfig())
    with pytest.raises(ConfigError, match="--workers 0"):
        curate(parse_corpus_args([str(path)]), CurateConfig(), dry_run=True, workers=0)


@pytest.mark.slow  # loads the GPT-2 tokenizer
def test_curated_output_feeds_mix(dirty_corpus, tmp_path):
    from domainlm.assets import reference_tokenizer
    from domainlm.mix.build import build_mix
    from domainlm.mix.config import MixConfig

    path, _, _ = dirty_corpus
    _run(path, tmp_path)
    config = MixConfig(
        sources={"dirty": {"paths": [str(tmp_path / "out" / "dirty.jsonl.gz")], "ratio": 1.0}},
        tokenizer=str(reference_tokenizer("gpt2")),
        seq_len=64,
        val_fraction=0.0,
    )
    (source,) = build_mix(config, dry_run=True, quiet=True).sources
    assert source.documents == 12 and source.tokens > 12 * 100
    assert source.read["malformed_lines"] == 0 and source.read["documents"] == 12


def test_source_filters_apply_to_their_source_only(tmp_path, paragraphs):
    from .conftest import write_jsonl

    looped = " ".join(paragraphs[0].split()[:20] * 12)  # fails duplicate_ngrams
    a = write_jsonl(tmp_path / "a.jsonl", [looped + " one"])
    b = write_jsonl(tmp_path / "b.jsonl", [looped + " two"])
    config = CurateConfig(source_filters={"b": {"rules": {"duplicate_ngrams": {"enabled": False}}}})
    report = curate(parse_corpus_args([str(a), str(b)]), config, dry_run=True).report
    assert [(s["source"], s["docs_kept"]) for s in report["sources"]] == [("a", 0), ("b", 1)]
    with pytest.raises(ConfigError, match="source_filters: no corpus named c"):
        curate(parse_corpus_args([str(a)]), CurateConfig(source_filters={"c": {}}), dry_run=True)


def test_a_failed_run_leaves_no_output(dirty_corpus, tmp_path, monkeypatch):
    from domainlm.corpus.curate.merge import DedupMerger

    path, _, _ = dirty_corpus
    calls = []

    def failing(self, record):
        calls.append(record.ordinal)
        if len(calls) == 5:
            raise RuntimeError("killed mid-run")
        return None

    monkeypatch.setattr(DedupMerger, "decide", failing)
    with pytest.raises(RuntimeError, match="killed mid-run"):
        _run(path, tmp_path)
    assert not (tmp_path / "out").exists() and list(tmp_path.glob(".out.tmp-*")) == []
