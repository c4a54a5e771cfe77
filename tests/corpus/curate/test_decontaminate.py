"""Decontamination: training documents that contain reference (held-out / benchmark) passages go,
also when the passage was re-cased or re-spaced; clean documents stay."""

import gzip
import json
import re

import pytest

from domainlm.assets import sample_corpus
from domainlm.corpus.curate import CurateConfig, curate, parse_corpus_args
from domainlm.corpus.curate.config import DecontaminateConfig, NormalizeConfig
from domainlm.corpus.curate.decontaminate import ReferenceIndex, ngram_hashes
from domainlm.errors import DataError

from .conftest import _austen_paragraphs, write_jsonl

_INJECTED = 200


def _legal_texts() -> list[str]:
    with gzip.open(sample_corpus("legal"), "rt", encoding="utf-8") as handle:
        return [json.loads(line)["text"] for line in handle]


def _modify(words: list[str], k: int) -> str:
    """Light edits a scraper or a copy-paste makes: case and whitespace (and none, for a quarter)."""
    if k % 4 == 1:
        return " ".join(words).upper()
    if k % 4 == 2:
        return "  \n ".join(" \t".join(words[i : i + 5]) for i in range(0, len(words), 5))
    if k % 4 == 3:
        return " ".join(w.capitalize() if i % 2 else w.lower() for i, w in enumerate(words))
    return " ".join(words)


@pytest.fixture(scope="module")
def contaminated(tmp_path_factory):
    """The shipped legal sample (506 clean documents) + 200 legal documents with a 14..60-word
    window of a held-out Austen paragraph pasted between two of their paragraphs."""
    tmp = tmp_path_factory.mktemp("decont")
    passages = _austen_paragraphs(_INJECTED)
    legal = _legal_texts()
    injected, windows = [], []
    for k, passage in enumerate(passages):
        words = passage.split()
        size = 14 + k % 47
        start = (k * 7) % max(1, len(words) - size)
        window = _modify(words[start : start + size], k)
        host = legal[k].split("\n\n")
        cut = len(host) // 2
        injected.append("\n\n".join(host[:cut] + [window] + host[cut:]))
        windows.append(window)
    train = write_jsonl(tmp / "train.jsonl.gz", legal + injected)
    reference = write_jsonl(tmp / "eval.jsonl", passages)
    return train, reference, len(legal), windows


def test_injected_passages_are_removed_and_clean_documents_kept(contaminated, tmp_path):
    train, reference, num_clean, windows = contaminated
    config = CurateConfig(
        decontaminate={"references": [str(reference)]},
        filters={"enabled": False},
        near_dedup={"enabled": False},
    )
    out = tmp_path / "out"
    report = curate(parse_corpus_args([str(train)]), config, out=out).report
    with gzip.open(out / "removed.jsonl.gz", "rt") as handle:
        removed = [json.loads(line) for line in handle]
    lines = {
        int(entry["id"].rsplit(":", 1)[1]): entry for entry in removed if entry["stage"] == "decontaminate"
    }
    injected = set(range(num_clean + 1, num_clean + _INJECTED + 1))
    recall = len(injected & set(lines)) / len(injected)
    assert recall >= 0.99
    assert recall == 1.0  # measured: every one of the 200
    assert set(lines) <= injected  # no clean document removed
    stage = next(s for s in report["stages"] if s["stage"] == "decontaminate")
    assert stage["docs_removed"] == _INJECTED and stage["docs_in"] == num_clean + _INJECTED
    assert stage["reference_documents"] == _INJECTED
    for k, window in enumerate(windows):
        entry = lines[num_clean + 1 + k]
        # The reference paragraph it came from, and every 13-gram of the pasted window.
        assert entry["reference"] == f"{reference.name}:{k + 1}"
        assert entry["overlap_ngrams"] == len(re.findall(r"\w+", window)) - 12
        assert f"{entry['overlap_ngrams']} distinct 13-grams" in entry["detail"]


def test_thresholds_n_and_min_overlap(tmp_path, paragraphs):
    words = paragraphs[0].split()
    reference = write_jsonl(tmp_path / "ref.jsonl", [paragraphs[0]])
    index = ReferenceIndex(DecontaminateConfig(references=[str(reference)]), NormalizeConfig())
    base = paragraphs[1]
    found_12 = index.check(base + " " + " ".join(words[:12]))
    found_13 = index.check(base + "\n\n" + " ".join(words[:13]).upper())
    assert found_12 is None  # 12 shared words: no 13-gram
    assert found_13 is not None and found_13.overlap == 1
    strict = ReferenceIndex(
        DecontaminateConfig(references=[str(reference)], min_overlap=3), NormalizeConfig()
    )
    assert strict.check(base + " " + " ".join(words[:14])) is None  # 2 shared 13-grams < 3
    assert strict.check(base + " " + " ".join(words[:15])).overlap == 3
    eight = ReferenceIndex(DecontaminateConfig(references=[str(reference)], ngram_words=8), NormalizeConfig())
    assert eight.check(base + " " + " ".join(words[:8])).overlap == 1
    assert len(ngram_hashes(" ".join(words[:12]), 13)) == 0


def test_missing_reference_is_a_data_error(tmp_path, paragraphs):
    corpus = write_jsonl(tmp_path / "c.jsonl", paragraphs[:2])
    config = CurateConfig(decontaminate={"references": [str(tmp_path / "nope.jsonl")]})
    with pytest.raises(
        DataError, match=r"decontaminate\.references \(--reference\): .*nope\.jsonl: no such file"
    ):
        curate(parse_corpus_args([str(corpus)]), config, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()
