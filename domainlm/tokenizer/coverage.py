"""Tokenizers x corpora (+ term lists) -> the vocabulary coverage report as a dict (report.json).

Definitions (also written into the report):
- word: a maximal run of non-whitespace characters (`\\S+`, what `str.split()` returns), so
  "judicata," is one word; fertility = tokens / words over the sampled documents.
- a word is split when 2+ tokens overlap its characters (offsets from the tokenizer, in context).
- byte fallback: tokens that stand for part of a character (byte-level pieces such as <0xE6>, or
  SentencePiece <0xNN> pieces); unknown: the model's unk token.
- vocab used: distinct token ids seen in the sample / vocabulary size (grows with the sample).
- words and terms are shown as a tokenizer splits them mid-sentence, i.e. encoded after a space.
Tokens never include special tokens the tokenizer would add around a text (BERT's [CLS]/[SEP]).

Speed: the documents of a byte-level BPE that tiktoken reproduces are encoded by tiktoken and the
token spans computed from the ids (token_spans.py: the same numbers, several times less CPU);
others by `tokenizers`. The report records which encoder measured each tokenizer.
"""

from __future__ import annotations

import json
import logging
import random
import string
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from domainlm.corpus import CorpusReader
from domainlm.errors import ConfigError, DataError
from domainlm.progress import make_progress
from domainlm.tokenizer.fidelity import digit_policy_costs, digit_token_mask, round_trip
from domainlm.tokenizer.load import LoadedTokenizer, load_tokenizer
from domainlm.tokenizer.token_spans import SpanEncoder, TokenizersSpans, span_encoder

log = logging.getLogger(__name__)

REPORT_FORMAT = "domainlm.vocab_report/v1"
_STRIP = string.punctuation + "“”‘’«»—–…"
_CANDIDATE_WORDS = 1000  # most frequent word types considered for the fragmented-words list
# Words with digits (years, versions, section numbers) are rarer per type: the "more tokens than the
# baseline" list looks at more types, letters or digits.
_INCREASE_CANDIDATES = 5000
_PROBE_DOCS = 8  # documents on which the fast encoder must also give `tokenizers`' ids

DEFINITIONS = {
    "word": "maximal run of non-whitespace characters (str.split()); punctuation stays attached",
    "fertility": "tokens per word over the sampled documents",
    "bytes_per_token": "UTF-8 bytes of text per token",
    "chars_per_token": "Unicode characters of text per token",
    "split_word_share": "share of word occurrences covered by 2 or more tokens (in context)",
    "unk_rate": "share of tokens that are the model's unknown token",
    "byte_fallback_rate": "share of tokens that encode part of a character (byte pieces)",
    "vocab_used_share": "distinct token ids seen in the sample / vocabulary size",
    "tokens_vs_baseline": "tokens needed for the sample / tokens the baseline needs (lower = fewer FLOPs)",
    "context_gain": "baseline tokens / tokens: how much more text fits in the same context window",
    "fragmented_words": "frequent words (punctuation stripped) ranked by extra tokens = count x (pieces - 1)",
    "encoder": "what encoded the documents: tiktoken (proved to give the tokenizer's ids) or tokenizers",
    "lossy_doc_share": "share of sampled documents where decode(encode(text)) != text (lossy round trip)",
    "lost_char_share": "share of characters the round trip changes or drops (character alignment of "
    "the first 100,000 characters of up to 1,000 changed documents), by kind: case / accents / "
    "whitespace / other",
    "lossless": "decode(encode(text)) == text on every sampled document; only lossless tokenizers "
    "are ranked as best on token counts",
    "digit_token_share": "share of tokens that are only digits (a leading space or ## allowed)",
    "digit_policy": "tokens the corpus's digit runs (\\d+) cost under each digit policy: single = one per "
    "digit, group3 = ceil(len/3) per run (cl100k), as trained = each tokenizer's digit tokens; "
    "tokens_if_* = the tokenizer's tokens with its digit tokens replaced by that policy's count",
    "more_tokens_than_baseline": "words (letters or digits) ranked by count x (pieces - baseline pieces)",
}


@dataclass
class CorpusSample:
    """The (sampled) documents of one corpus with their word spans and counts."""

    name: str
    path: Path
    texts: list[str]
    total_documents: int
    word_starts: list[np.ndarray] = field(default_factory=list)
    word_ends: list[np.ndarray] = field(default_factory=list)
    word_types: Counter = field(default_factory=Counter)
    all_types: Counter = field(default_factory=Counter)  # letters or digits: years, versions, ids

    @property
    def num_words(self) -> int:
        return int(sum(len(s) for s in self.word_starts))

    def describe(self) -> dict:
        return {
            "name": self.name,
            "path": str(self.path),
            "documents": self.total_documents,
            "sampled_documents": len(self.texts),
            "words": self.num_words,
            "bytes": sum(len(t.encode("utf-8")) for t in self.texts),
            "chars": sum(len(t) for t in self.texts),
        }


def load_corpus_sample(name: str, path: Path, sample_docs: int, seed: int) -> CorpusSample:
    """A seeded uniform sample of `sample_docs` documents (reservoir, file order kept); 0 = all."""
    reader = CorpusReader([path], source=name)
    rng = random.Random(f"{seed}:{name}")
    kept: list[tuple[int, str]] = []
    total = 0
    for index, doc in enumerate(reader):
        total += 1
        if sample_docs <= 0 or len(kept) < sample_docs:
            kept.append((index, doc.text))
        else:
            slot = rng.randrange(index + 1)
            if slot < sample_docs:
                kept[slot] = (index, doc.text)
    if not kept:
        raise DataError(f"--corpus {name}={path}: no documents with text; check the path and its format")
    sample = CorpusSample(name, Path(path), [text for _, text in sorted(kept)], total)
    raw_words: Counter = Counter()
    for text in sample.texts:
        starts, ends = word_spans(text)
        sample.word_starts.append(starts)
        sample.word_ends.append(ends)
        raw_words.update(text.split())
    for word, count in raw_words.items():
        sample.word_types[_word_type(word)] += count
        core = word.strip(_STRIP)
        if any(ch.isalnum() for ch in core):
            sample.all_types[core] += count
    sample.word_types.pop("", None)
    return sample


# Code points str.split() treats as whitespace (the same set `\S+` excludes).
_WHITESPACE = np.array([c for c in range(0x3001) if chr(c).isspace()], dtype=np.uint32)


def word_spans(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Start and end character offsets of every `\\S+` word, vectorized (no per-word Python)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    padded = np.concatenate(([True], np.isin(codes, _WHITESPACE), [True]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])  # alternating word starts and ends
    return edges[0::2].astype(np.int64), edges[1::2].astype(np.int64)


def _word_type(word: str) -> str:
    """'(judicata),' -> 'judicata'; words without a letter are dropped from the fragmented list."""
    core = word.strip(_STRIP)
    return core if any(ch.isalpha() for ch in core) else ""


def pieces_per_word(offsets: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """How many tokens overlap each word [start, end), from token character offsets (n, 2)."""
    counts = np.zeros(len(starts) + 1, dtype=np.int64)
    if len(offsets) and len(starts):
        begin, end = offsets[:, 0], offsets[:, 1]
        keep = end > begin  # empty spans: special tokens, nothing of the text
        first = np.searchsorted(ends, begin[keep], side="right")  # first word ending after the token starts
        last = np.searchsorted(starts, end[keep], side="left") - 1  # last word starting before it ends
        valid = first <= last
        np.add.at(counts, first[valid], 1)
        np.add.at(counts, last[valid] + 1, -1)  # a token spanning several words counts for each
    return np.cumsum(counts[:-1])


def measure(tok: LoadedTokenizer, sample: CorpusSample, encoder: SpanEncoder | None = None) -> dict:
    """Coverage numbers of one tokenizer on one corpus sample (see DEFINITIONS).

    `encoder` gives ids and token spans (token_spans.py); default `tokenizers`' own offsets."""
    encoded = (encoder or TokenizersSpans(tok)).encode(sample.texts)
    seen = np.zeros(tok.vocab_size, dtype=bool)
    digit_ids = digit_token_mask(tok)
    tokens = split = unk = fallback = digits = 0
    for (ids, offsets), starts, ends in zip(encoded, sample.word_starts, sample.word_ends, strict=True):
        tokens += len(ids)
        split += int((pieces_per_word(offsets, starts, ends) >= 2).sum())
        unk += int((ids == tok.unk_id).sum()) if tok.unk_id is not None else 0
        fallback += int(tok.fallback[ids].sum())
        digits += int(digit_ids[ids].sum())
        seen[ids] = True
    fidelity = round_trip(tok, sample.texts, [ids for ids, _ in encoded])
    info = sample.describe()
    words, size = max(info["words"], 1), max(tokens, 1)
    return {
        "tokenizer": tok.name,
        "corpus": sample.name,
        "tokens": tokens,
        "words": info["words"],
        "bytes": info["bytes"],
        "chars": info["chars"],
        "fertility": _r(tokens / words),
        "bytes_per_token": _r(info["bytes"] / size),
        "chars_per_token": _r(info["chars"] / size),
        "split_word_share": _r(split / words),
        "unk_rate": _r(unk / size),
        "byte_fallback_rate": _r(fallback / size),
        "vocab_used": int(seen.sum()),
        "vocab_used_share": _r(seen.sum() / tok.vocab_size),
        "digit_tokens": digits,
        "digit_token_share": _r(digits / size),
        **fidelity,
    }


def _r(value: float) -> float:
    return round(float(value), 6)


def split_texts(tok: LoadedTokenizer, texts: list[str]) -> list[list[str]]:
    """Pieces of each text as the tokenizer splits it mid-sentence (encoded after a space)."""
    encodings = tok.tokenizer.encode_batch([" " + t for t in texts], add_special_tokens=False)
    pieces = []
    for enc in encodings:
        # Tokens overlapping the text itself: a leading-space-only token is not one of its pieces.
        ids = [i for i, (s, e) in zip(enc.ids, enc.offsets, strict=True) if e > 1 and e > s]
        pieces.append([tok.piece(i) for i in ids])
    return pieces


def fragmented_words(
    tokenizers: list[LoadedTokenizer], sample: CorpusSample, ranked_by: str, top: int
) -> dict:
    """The frequent words that cost the most extra tokens, with their pieces under every tokenizer."""
    candidates = sorted(sample.word_types.items(), key=lambda kv: (-kv[1], kv[0]))[:_CANDIDATE_WORDS]
    words = [w for w, _ in candidates]
    pieces = {tok.name: split_texts(tok, words) for tok in tokenizers}
    rows = [
        {"word": w, "count": c, "pieces": {name: pieces[name][i] for name in pieces}}
        for i, (w, c) in enumerate(candidates)
    ]

    def extra(row: dict, name: str) -> int:
        return row["count"] * (len(row["pieces"][name]) - 1)

    per_tokenizer = {
        tok.name: [
            {
                "word": r["word"],
                "count": r["count"],
                "pieces": r["pieces"][tok.name],
                "extra_tokens": extra(r, tok.name),
            }
            for r in sorted(rows, key=lambda r: (-extra(r, tok.name), r["word"]))[:top]
        ]
        for tok in tokenizers
    }
    ranked = sorted(rows, key=lambda r: (-extra(r, ranked_by), r["word"]))[:top]
    return {
        "ranked_by": ranked_by,
        "words": ranked,
        "per_tokenizer": per_tokenizer,
        "more_tokens_than_baseline": more_tokens_than_baseline(tokenizers, sample, ranked_by, top),
    }


def more_tokens_than_baseline(
    tokenizers: list[LoadedTokenizer], sample: CorpusSample, baseline: str, top: int
) -> dict[str, list[dict]]:
    """Per tokenizer, the words it splits into more pieces than the baseline, by extra tokens in the sample.

    Ranked by the tokenizer itself, so words only it splits badly (years, version numbers,
    identifiers under a digit-splitting policy) show up; words with digits are included."""
    candidates = sorted(sample.all_types.items(), key=lambda kv: (-kv[1], kv[0]))[:_INCREASE_CANDIDATES]
    pieces = {tok.name: split_texts(tok, [w for w, _ in candidates]) for tok in tokenizers}
    base = pieces[baseline]
    result = {}
    for name, mine in pieces.items():
        if name == baseline:
            continue
        rows = [
            {"word": w, "count": c, "pieces": mine[i], "baseline_pieces": base[i],
             "extra_tokens": c * (len(mine[i]) - len(base[i]))}
            for i, (w, c) in enumerate(candidates)
            if len(mine[i]) > len(base[i])
        ]  # fmt: skip
        result[name] = sorted(rows, key=lambda r: (-r["extra_tokens"], r["word"]))[:top]
    return result


def read_terms(name: str, path: Path) -> list[str]:
    """One term per line (`#` comments allowed), or JSON: a list of terms or an object keyed by term."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--terms {name}={path}: file not found; pass a text file with one term per line")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"--terms {name}={path}: invalid JSON ({exc.msg}, line {exc.lineno})") from None
        terms = [str(t).strip() for t in (data.keys() if isinstance(data, dict) else data)]
    else:
        terms = [line.strip() for line in text.splitlines() if not line.lstrip().startswith("#")]
    terms = list(dict.fromkeys(t for t in terms if t))
    if not terms:
        raise DataError(f"--terms {name}={path}: the term list is empty; add one term per line")
    return terms


def term_table(tokenizers: list[LoadedTokenizer], name: str, path: Path, terms: list[str]) -> dict:
    """Pieces of every term under every tokenizer, and per-tokenizer summaries."""
    pieces = {tok.name: split_texts(tok, terms) for tok in tokenizers}
    rows = [
        {"term": t, "words": len(t.split()), "pieces": {n: pieces[n][i] for n in pieces}}
        for i, t in enumerate(terms)
    ]
    summary = {}
    for tok in tokenizers:
        counts = np.array([len(r["pieces"][tok.name]) for r in rows])
        words = np.array([r["words"] for r in rows])
        summary[tok.name] = {
            "mean_pieces": _r(counts.mean()),
            "pieces_per_word": _r(counts.sum() / words.sum()),
            "fragmented_share": _r((counts > words).mean()),  # more pieces than the term has words
        }
    return {"name": name, "path": str(path), "num_terms": len(terms), "summary": summary, "terms": rows}


def add_baseline_columns(metrics: list[dict], baseline: str) -> None:
    """tokens_vs_baseline and context_gain for every row, against the baseline on the same corpus."""
    base = {m["corpus"]: m["tokens"] for m in metrics if m["tokenizer"] == baseline}
    for m in metrics:
        reference = base[m["corpus"]]
        m["tokens_vs_baseline"] = _r(m["tokens"] / reference) if reference else None
        m["context_gain"] = _r(reference / m["tokens"]) if m["tokens"] else None


def check_names(kind: str, names: list[str]) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"--{kind}: name {repeated[0]!r} is used twice; give each a unique NAME=PATH")


def build_coverage_report(
    tokenizers: list[tuple[str, Path]],
    corpora: list[tuple[str, Path]],
    terms: list[tuple[str, Path]] = (),
    baseline: str | None = None,
    sample_docs: int = 1000,
    seed: int = 0,
    top_words: int = 15,
    quiet: bool = True,
    fast: bool = True,
) -> dict:
    """Load and check every input first, then measure every tokenizer on every corpus.

    `fast=False` encodes with `tokenizers` only (the numbers are the same; see token_spans.py)."""
    if not tokenizers or not corpora:
        raise ConfigError("vocab report needs at least one --tokenizer and one --corpus")
    check_names("tokenizer", [n for n, _ in tokenizers])
    check_names("corpus", [n for n, _ in corpora])
    check_names("terms", [n for n, _ in terms])
    baseline = baseline or tokenizers[0][0]
    if baseline not in [n for n, _ in tokenizers]:
        raise ConfigError(
            f"--baseline {baseline}: not one of the tokenizers ({', '.join(n for n, _ in tokenizers)})"
        )
    if sample_docs < 0 or top_words < 1:
        raise ConfigError("--sample-docs must be >= 0 (0 = all documents) and --top-words >= 1")
    term_lists = [(n, p, read_terms(n, p)) for n, p in terms]
    for name, path in corpora:
        CorpusReader([path], source=name)  # a missing corpus fails before any tokenizer is loaded
    loaded = [load_tokenizer(p, name=n) for n, p in tokenizers]
    metrics, samples = [], []
    encoders: dict[str, SpanEncoder] = {}
    with make_progress(quiet) as progress:
        task = progress.add_task("coverage", total=len(corpora) * len(loaded))
        for name, path in corpora:
            sample = load_corpus_sample(name, path, sample_docs, seed)
            samples.append(sample)
            for tok in loaded:
                if tok.name not in encoders:  # built once, proved on the first corpus' first documents
                    encoders[tok.name] = span_encoder(tok, sample.texts[:_PROBE_DOCS], fast)
                metrics.append(measure(tok, sample, encoders[tok.name]))
                progress.advance(task)
    add_baseline_columns(metrics, baseline)
    return {
        "format": REPORT_FORMAT,
        "definitions": DEFINITIONS,
        "settings": {"baseline": baseline, "sample_docs": sample_docs, "seed": seed, "top_words": top_words},
        "tokenizers": [{**t.describe(), "encoder": encoders[t.name].name} for t in loaded],
        "corpora": [s.describe() for s in samples],
        "metrics": metrics,
        "fragmented_words": {s.name: fragmented_words(loaded, s, baseline, top_words) for s in samples},
        "digit_policy": {
            s.name: digit_policy_costs(s.texts, [m for m in metrics if m["corpus"] == s.name])
            for s in samples
        },
        "terms": [term_table(loaded, n, p, t) for n, p, t in term_lists],
    }
