"""Tiny corpora for the curate tests, cut from the shipped Jane Austen sample (real, varied prose)."""

import gzip
import json
import re
from pathlib import Path

import pytest

from domainlm.assets import sample_corpus


def _austen_paragraphs(limit: int) -> list[str]:
    """Distinct paragraphs of 60-150 words: each passes every default quality rule on its own."""
    found: list[str] = []
    with gzip.open(sample_corpus("general"), "rt", encoding="utf-8") as handle:
        for line in handle:
            for block in re.split(r"\n\s*\n", json.loads(line)["text"]):
                text = " ".join(block.split())
                if 60 <= len(text.split()) <= 150 and text not in found:
                    found.append(text)
                    if len(found) == limit:
                        return found
    raise AssertionError("not enough paragraphs in the general sample")


@pytest.fixture(scope="session")
def paragraphs() -> list[str]:
    return _austen_paragraphs(40)


def change_words(text: str, count: int) -> str:
    """Replace `count` evenly spaced words (never the first or last): a near-duplicate."""
    words = text.split()
    step = len(words) // (count + 1)
    for k in range(1, count + 1):
        words[k * step] = f"CHANGED{k}"
    return " ".join(words)


def write_jsonl(path: Path, texts: list[str]) -> Path:
    """JSON Lines, gzip-compressed when the name ends in .gz."""
    data = "".join(json.dumps({"text": text}) + "\n" for text in texts).encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


@pytest.fixture
def dirty_corpus(tmp_path, paragraphs) -> tuple[Path, dict, list[str]]:
    """12 clean documents (two paragraphs each, 120-300 words) + 2 exact copies + 1 near copy
    + 1 short doc + 1 looped doc, with the expected fate of each line (line number -> stage or rule)."""
    clean = [paragraphs[2 * i] + "\n\n" + paragraphs[2 * i + 1] for i in range(12)]
    texts = list(clean)
    texts.append(clean[0])  # line 13: exact copy of line 1
    texts.append("  " + clean[3].replace(" ", " \t ") + "\n")  # line 14: same after normalization
    texts.append(change_words(clean[5], 3))  # line 15: 3 words changed
    texts.append("Too short to be a document.")  # line 16: word_count
    texts.append(" ".join(["the price of tea and the cost of sugar"] * 12))  # line 17: looped text
    path = write_jsonl(tmp_path / "dirty.jsonl.gz", texts)
    expected = {
        13: "exact_dedup",
        14: "exact_dedup",
        15: "near_dedup",
        16: "word_count",
        17: "duplicate_ngrams",
    }
    return path, expected, clean
