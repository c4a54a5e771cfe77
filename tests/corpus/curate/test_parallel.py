"""Worker count and sharding change how the work is split, never the result (byte for byte)."""

import pytest

from domainlm.corpus.curate import CurateConfig, curate, parse_corpus_args
from domainlm.corpus.curate.process import DocProcessor
from domainlm.corpus.curate.shards import merged_records, run_shards
from domainlm.outputs import MARKER_NAME

from .conftest import write_jsonl

pytestmark = pytest.mark.slow  # process pools


@pytest.fixture
def corpus(tmp_path, paragraphs):
    """Two corpora with duplicates inside and across them; small batches so work really splits."""
    a = write_jsonl(tmp_path / "a.jsonl.gz", paragraphs[:30] + paragraphs[:3])
    b = write_jsonl(tmp_path / "b.jsonl", paragraphs[25:40] + ["short doc"])
    return parse_corpus_args([str(a), str(b)])


def _files(out):
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name != MARKER_NAME}  # marker: a time


def test_workers_and_shards_give_byte_identical_output(corpus, tmp_path):
    config = CurateConfig(batch_docs=4, redact={"enabled": True})
    runs = {
        "w1": dict(workers=1),
        "w2": dict(workers=2),
        "s3": dict(workers=2, shards=3),
        "s1": dict(workers=1, shards=1),
    }
    outputs = {}
    for name, kwargs in runs.items():
        result = curate(corpus, config, out=tmp_path / name, **kwargs)
        outputs[name] = _files(tmp_path / name)
        assert result.report["totals"]["docs_in"] == 49
    assert outputs["w1"] == outputs["w2"] == outputs["s3"] == outputs["s1"]
    assert sorted(outputs["w1"]) == [
        "a.jsonl.gz",
        "b.jsonl.gz",
        "removed.jsonl.gz",
        "report.json",
        "report.md",
    ]
    # 3 exact copies in a, 5 cross-corpus copies (paragraphs 25-29) in b, 1 short doc.
    assert b'"docs_kept": 40' in outputs["w1"]["report.json"]


def test_shard_signatures_merge_back_into_global_order(corpus, tmp_path):
    config = CurateConfig()
    paths, read_stats = run_shards(corpus, config, num_shards=3, work_dir=tmp_path, workers=2)
    merged = list(merged_records(paths))
    assert [r.ordinal for r in merged] == list(range(49))
    assert all(r.text is None for r in merged)  # shard files carry signatures, not texts
    assert [s["documents"] for s in read_stats] == [33, 16]
    from domainlm.corpus.curate.inputs import build_readers, iter_documents

    processor = DocProcessor(config)
    direct = [processor.process(o, d) for o, d in iter_documents(build_readers(corpus))]
    assert [r.digest for r in merged] == [r.digest for r in direct]
    # A shard skips MinHash for raw repeats it has already seen (exact dedup removes them anyway).
    skipped = [
        a.ordinal
        for a, b in zip(merged, direct, strict=True)
        if a.signature is None and b.signature is not None
    ]
    assert set(skipped) <= {30, 31, 32}  # the 3 verbatim copies in corpus a
    assert all(
        (a.signature == b.signature).all()
        for a, b in zip(merged, direct, strict=True)
        if a.signature is not None
    )


def test_decontamination_and_paragraph_dedup_are_identical_across_workers_and_shards(tmp_path, paragraphs):
    """Documents p[i] + p[i+1]: each repeats its predecessor's second paragraph. The reference holds
    p[5], so documents 4 and 5 go; paragraph dedup then drops p[i] from documents 1-3 and 7-19."""
    p = paragraphs
    corpus = write_jsonl(tmp_path / "c.jsonl", [p[i] + "\n\n" + p[i + 1] for i in range(20)])
    reference = write_jsonl(tmp_path / "eval.jsonl", [p[5].upper()])
    config = CurateConfig(
        batch_docs=3,
        redact={"enabled": True},
        decontaminate={"references": [str(reference)]},
        paragraph_dedup={"enabled": True},
    )
    specs = parse_corpus_args([str(corpus)])
    runs = {"w1": dict(workers=1), "w2": dict(workers=2), "s3": dict(workers=2, shards=3)}
    outputs = {}
    for name, kwargs in runs.items():
        report = curate(specs, config, out=tmp_path / name, **kwargs).report
        outputs[name] = _files(tmp_path / name)
    assert outputs["w1"] == outputs["w2"] == outputs["s3"]
    stages = {s["stage"]: s for s in report["stages"]}
    assert stages["decontaminate"]["docs_removed"] == 2
    assert stages["paragraph_dedup"]["paragraphs"]["paragraphs_removed"] == 16
    assert stages["paragraph_dedup"]["paragraphs"]["documents_changed"] == 16
    assert stages["paragraph_dedup"]["docs_kept"] == 18
