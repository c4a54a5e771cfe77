"""Normalized text -> the first Gopher/C4-style quality rule it fails (or None), thresholds from config.

Definitions follow Gopher (Rae et al. 2021, Appendix A, Table A1) as reproduced by datatrove:
- a *word* is a whitespace-separated token with at least one letter or digit (pure punctuation
  such as '-' or '*' is not counted);
- *lines* are the non-empty lines, *paragraphs* the blocks separated by blank lines;
- character fractions are over the characters of the whole text (n-grams) or of all blocks
  (lines, paragraphs), counting only repeats, never the first occurrence.
Rules run in config order and stop at the first failure, so each removed document is charged to
exactly one rule and the per-rule counts add up.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from domainlm.corpus.curate import config as cfg

# One C-level pass each instead of a Python test per word (these rules run on every document):
# Whitespace tokens with at least one letter or digit; the leading class excludes \w so the engine
# never backtracks (1.5x faster than the equivalent \S*\w\S*).
_WORD_TOKEN = re.compile(r"[^\w\s]*\w\S*")
_ALPHA_TOKEN = re.compile(r"\S*[^\W\d_]\S*")  # ... with at least one letter
_STOP_WORD = re.compile(r"\b(?:the|be|to|of|and|that|have|with)\b", re.IGNORECASE)
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_BULLETS = ("•", "‣", "◦", "⁃", "∙", "▪", "●", "○", "■", "□", "➢", "➤", "►", "-", "*", "–")
_ELLIPSES = ("...", "…")
# Odd 64-bit multiplier for the polynomial n-gram hash (uint64 arithmetic wraps, which is intended).
_NGRAM_BASE = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class Verdict:
    """Why a document was removed: the rule and a human-readable measurement."""

    rule: str
    detail: str


class TextView:
    """The splits every rule needs, each computed once per document and only if asked for."""

    def __init__(self, text: str) -> None:
        self.text = text

    @cached_property
    def words(self) -> list[str]:
        return _WORD_TOKEN.findall(self.text)

    @cached_property
    def lines(self) -> list[str]:
        return [line.strip() for line in self.text.split("\n") if line.strip()]

    @cached_property
    def paragraphs(self) -> list[str]:
        return [p.strip() for p in _PARAGRAPH_BREAK.split(self.text) if p.strip()]

    @cached_property
    def word_lengths(self) -> np.ndarray:
        return np.fromiter(map(len, self.words), dtype=np.int64, count=len(self.words))

    @cached_property
    def word_ids(self) -> np.ndarray:
        """Each distinct word -> a small integer (from 1, so no word hashes to zero)."""
        vocab = {word: index for index, word in enumerate(dict.fromkeys(self.words), start=1)}
        return np.fromiter(map(vocab.__getitem__, self.words), dtype=np.uint64, count=len(self.words))


def _word_count(view: TextView, rule: cfg.WordCountRule) -> str | None:
    n = len(view.words)
    if n < rule.min_words:
        return f"{n} words < {rule.min_words}"
    if n > rule.max_words:
        return f"{n} words > {rule.max_words}"
    return None


def _mean_word_length(view: TextView, rule: cfg.MeanWordLengthRule) -> str | None:
    if not view.words:
        return "no words"
    mean = float(view.word_lengths.mean())
    if not rule.min_chars <= mean <= rule.max_chars:
        return f"mean word length {mean:.2f} outside [{rule.min_chars:g}, {rule.max_chars:g}]"
    return None


def _symbol_word_ratio(view: TextView, rule: cfg.SymbolWordRatioRule) -> str | None:
    n = max(len(view.words), 1)
    hashes = view.text.count("#") / n
    ellipses = sum(view.text.count(e) for e in _ELLIPSES) / n
    if hashes > rule.max_ratio:
        return f"{hashes:.3f} '#' per word > {rule.max_ratio:g}"
    if ellipses > rule.max_ratio:
        return f"{ellipses:.3f} ellipses per word > {rule.max_ratio:g}"
    return None


def _alpha_words(view: TextView, rule: cfg.AlphaWordsRule) -> str | None:
    if not view.words:
        return "no words"
    share = len(_ALPHA_TOKEN.findall(view.text)) / len(view.words)
    if share < rule.min_fraction:
        return f"{share:.3f} of words alphabetic < {rule.min_fraction:g}"
    return None


def _stop_words(view: TextView, rule: cfg.StopWordsRule) -> str | None:
    found = 0
    for _ in _STOP_WORD.finditer(view.text):  # stop counting once there are enough
        found += 1
        if found >= rule.min_stop_words:
            return None
    if found < rule.min_stop_words:
        return f"{found} stop words < {rule.min_stop_words}"
    return None


def _line_share(lines: list[str], test: Callable[[str], bool]) -> float:
    return sum(1 for line in lines if test(line)) / len(lines) if lines else 0.0


def _bullet_lines(view: TextView, rule: cfg.LineFractionRule) -> str | None:
    share = _line_share(view.lines, lambda line: line.startswith(_BULLETS))
    return f"{share:.3f} of lines are bullets > {rule.max_fraction:g}" if share > rule.max_fraction else None


def _ellipsis_lines(view: TextView, rule: cfg.LineFractionRule) -> str | None:
    share = _line_share(view.lines, lambda line: line.endswith(_ELLIPSES))
    return (
        f"{share:.3f} of lines end in an ellipsis > {rule.max_fraction:g}"
        if share > rule.max_fraction
        else None
    )


def duplicate_block_fractions(blocks: list[str]) -> tuple[float, float]:
    """(share of blocks that repeat an earlier one, share of block characters in those repeats)."""
    if not blocks:
        return 0.0, 0.0
    seen: set[str] = set()
    num_dup = dup_chars = 0
    for block in blocks:
        if block in seen:
            num_dup += 1
            dup_chars += len(block)
        seen.add(block)
    return num_dup / len(blocks), dup_chars / max(sum(len(b) for b in blocks), 1)


def _duplicate_blocks(blocks: list[str], kind: str, rule: cfg.DuplicateBlocksRule) -> str | None:
    share, char_share = duplicate_block_fractions(blocks)
    if share > rule.max_fraction:
        return f"{share:.3f} of {kind} are duplicates > {rule.max_fraction:g}"
    if char_share > rule.max_char_fraction:
        return f"{char_share:.3f} of {kind} characters are duplicated > {rule.max_char_fraction:g}"
    return None


def _duplicate_lines(view: TextView, rule: cfg.DuplicateBlocksRule) -> str | None:
    return _duplicate_blocks(view.lines, "lines", rule)


def _duplicate_paragraphs(view: TextView, rule: cfg.DuplicateBlocksRule) -> str | None:
    return _duplicate_blocks(view.paragraphs, "paragraphs", rule)


def _ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """Polynomial hash of every n-gram start (len(ids) - n + 1 values); collisions ~ 2^-64."""
    hashes = ids.copy()
    for k in range(1, n):
        hashes = hashes[:-1] * _NGRAM_BASE + ids[k:]
    return hashes


def ngram_char_fractions(view: TextView, n: int) -> tuple[float, float]:
    """(top n-gram fraction, duplicate n-gram fraction) of the text's characters, as Gopher defines them.

    Top: characters of the most frequent n-gram times its count (0 if nothing repeats).
    Duplicate: characters of the words covered by n-grams that repeat an earlier occurrence (the
    first occurrence is not counted, as in datatrove's reproduction).
    """
    total = len(view.text)
    if len(view.words) < n or total == 0:
        return 0.0, 0.0
    _, first, inverse, counts = np.unique(
        _ngram_hashes(view.word_ids, n), return_index=True, return_inverse=True, return_counts=True
    )
    top_count = int(counts.max())
    top = 0.0
    if top_count > 1:
        start = int(first[np.argmax(counts)])
        top = int(view.word_lengths[start : start + n].sum()) * top_count / total
    repeat = (first[inverse] < np.arange(len(inverse))).astype(np.int64)
    covered = np.convolve(repeat, np.ones(n, dtype=np.int64))[: len(view.words)] > 0
    return top, int(view.word_lengths[covered].sum()) / total


def _top_ngrams(view: TextView, rule: cfg.NgramRule) -> str | None:
    for n, limit in rule.max_char_fraction.items():
        top, _ = ngram_char_fractions(view, n)
        if top > limit:
            return f"top {n}-gram covers {top:.3f} of characters > {limit:g}"
    return None


def _duplicate_ngrams(view: TextView, rule: cfg.NgramRule) -> str | None:
    limits = list(rule.max_char_fraction.items())
    for index, (n, limit) in enumerate(limits):
        _, dup = ngram_char_fractions(view, n)
        if dup > limit:
            return f"duplicate {n}-grams cover {dup:.3f} of characters > {limit:g}"
        # Coverage only shrinks as n grows (a repeated (n+1)-gram is made of repeated n-grams), so
        # once it is under every remaining limit no larger n can fail: most documents stop at n=5.
        if dup <= min(lim for _, lim in limits[index:]):
            return None
    return None


RULE_FUNCTIONS: dict[str, Callable[[TextView, object], str | None]] = {
    "word_count": _word_count,
    "mean_word_length": _mean_word_length,
    "symbol_word_ratio": _symbol_word_ratio,
    "alpha_words": _alpha_words,
    "stop_words": _stop_words,
    "bullet_lines": _bullet_lines,
    "ellipsis_lines": _ellipsis_lines,
    "duplicate_lines": _duplicate_lines,
    "duplicate_paragraphs": _duplicate_paragraphs,
    "top_ngrams": _top_ngrams,
    "duplicate_ngrams": _duplicate_ngrams,
}
assert list(RULE_FUNCTIONS) == list(cfg.RulesConfig.model_fields), "rule registry out of sync with config"


class QualityFilter:
    """The enabled rules of a FiltersConfig, in order."""

    def __init__(self, config: cfg.FiltersConfig) -> None:
        self.rules = [
            (name, RULE_FUNCTIONS[name], getattr(config.rules, name))
            for name in RULE_FUNCTIONS
            if config.enabled and getattr(config.rules, name).enabled
        ]

    @property
    def rule_names(self) -> list[str]:
        return [name for name, _, _ in self.rules]

    def check(self, text: str) -> Verdict | None:
        view = TextView(text)
        for name, function, rule in self.rules:
            detail = function(view, rule)
            if detail is not None:
                return Verdict(name, detail)
        return None


def enabled_rule_names(configs: list[cfg.FiltersConfig]) -> list[str]:
    """Rules enabled in any of the configs (global and per source), in evaluation order."""
    enabled = {name for config in configs for name in QualityFilter(config).rule_names}
    return [name for name in RULE_FUNCTIONS if name in enabled]


def count_words(text: str) -> int:
    """Whitespace tokens: the 'words' column of the report (cheap, and the same in every stage)."""
    return len(text.split())
