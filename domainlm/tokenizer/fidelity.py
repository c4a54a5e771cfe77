"""Round-trip fidelity and digit costs for the coverage report (coverage.py).

A tokenizer that lowercases or drops whitespace needs fewer tokens because it throws text away:
decode(encode(text)) is not the text. `round_trip` measures how often and how much, so the report
never ranks such a tokenizer against lossless ones on token counts without saying so.
`digit_policy_costs` prices the digit policies of `tokenizer train --digits` on the corpus itself.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

import numpy as np

from domainlm.tokenizer.load import LoadedTokenizer

# The alignment is linear (~5M characters/s); a bound keeps a huge sample cheap. The share of changed
# documents is exact over all of them; the character share is scaled from the compared ones.
DIFF_CHARS = 100_000  # characters per changed document compared
DIFF_DOCS = 1000  # changed documents compared
_DIGIT_RUN = re.compile(r"\d+")
_PREFIXES = (" ", "##", "▁")  # a digit token may carry its word's leading space or continuation mark

KINDS = ("case", "accents", "whitespace", "other")


def lost_characters(original: str, decoded: str, unk: str | None = None) -> Counter:
    """Characters of `original` the round trip changed or dropped, by kind (see KINDS).

    A linear alignment, not a general diff (difflib took 11-29 s for 280,000 characters of legal
    text against BERT's decode): lossy tokenizers change text in place (case, accents, whitespace
    runs, spaces around punctuation, whole words to `unk`), so one pass with one character of
    look-ahead realigns after each change. Inserted characters change no original one."""
    lost: Counter = Counter()
    i = j = 0
    n, m = len(original), len(decoded)
    while i < n and j < m:
        x, y = original[i], decoded[j]
        if x == y:
            i, j = i + 1, j + 1
        elif unk and decoded.startswith(unk, j):  # a word the vocabulary cannot spell: all of it is lost
            j += len(unk)
            while i < n and not original[i].isspace():
                lost["other"] += 1
                i += 1
        elif x.isspace() != y.isspace():
            if x.isspace():  # whitespace dropped
                lost["whitespace"] += 1
                i += 1
            else:  # a space inserted (BERT puts spaces around punctuation)
                j += 1
        elif i + 1 < n and original[i + 1] == y and _base(x) != _base(y):  # a character dropped
            lost[_kind(x, "")] += 1
            i += 1
        elif j + 1 < m and decoded[j + 1] == x:  # a character inserted
            j += 1
        else:  # changed in place
            lost[_kind(x, y)] += 1
            i, j = i + 1, j + 1
    for ch in original[i:]:  # the decoded text ended early
        lost[_kind(ch, "")] += 1
    return lost


def _base(char: str) -> str:
    """The letter without case or accents: 'É' -> 'e'."""
    return unicodedata.normalize("NFD", char)[:1].lower()


def _kind(char: str, replacement: str) -> str:
    if char.isspace():
        return "whitespace"
    if replacement and char.lower() == replacement.lower():
        return "case"
    if replacement and _base(char) == _base(replacement):
        return "accents"
    return "other"


def round_trip(tok: LoadedTokenizer, texts: list[str], ids: list[np.ndarray]) -> dict:
    """Share of documents and (estimated) of characters that decode(encode(text)) does not give back."""
    decoded = tok.tokenizer.decode_batch([a.tolist() for a in ids], skip_special_tokens=False)
    changed = [i for i, (text, back) in enumerate(zip(texts, decoded, strict=True)) if text != back]
    lost: Counter = Counter()
    compared = 0
    for i in changed[:DIFF_DOCS]:
        text = texts[i][:DIFF_CHARS]
        back = decoded[i][: DIFF_CHARS + max(0, len(decoded[i]) - len(texts[i]))]  # the same stretch
        lost += lost_characters(text, back, tok.tokenizer.model.unk_token if _has_unk(tok) else None)
        compared += len(text)
    # Unchanged documents lose nothing: scale the compared changed characters to all changed ones.
    changed_chars = sum(len(texts[i]) for i in changed)
    total = max(sum(len(t) for t in texts), 1)
    scale = changed_chars / max(compared, 1) / total
    by_kind = {kind: round(lost[kind] * scale, 6) for kind in KINDS}
    return {
        "lossless": not changed,
        "lossy_docs": len(changed),
        "lossy_doc_share": round(len(changed) / max(len(texts), 1), 6),
        "lost_char_share": round(sum(by_kind.values()), 6),
        "lost_chars_by_kind": by_kind,
        "fidelity_chars_compared": compared,
    }


def _has_unk(tok: LoadedTokenizer) -> bool:
    """WordPiece and BPE name their unk token on the model; a byte-level model never produces it."""
    return tok.unk_id is not None and isinstance(getattr(tok.tokenizer.model, "unk_token", None), str)


def digit_token_mask(tok: LoadedTokenizer) -> np.ndarray:
    """bool per id: the token's text is only decimal digits (after a leading space, ## or ▁)."""
    mask = np.zeros(tok.vocab_size, dtype=bool)
    for token, index in tok.tokenizer.get_vocab(with_added_tokens=False).items():
        if index >= tok.vocab_size or not any(ch.isdigit() for ch in token):
            continue  # most tokens: no digit at all, skip the readable-form conversion
        piece = tok.piece(index)
        for prefix in _PREFIXES:
            piece = piece.removeprefix(prefix)
        mask[index] = piece.isdecimal()
    return mask


def digit_policy_costs(texts: list[str], metrics: list[dict]) -> dict:
    """What the corpus's digit runs cost under each policy, and each tokenizer's total under each."""
    runs = [len(run) for text in texts for run in _DIGIT_RUN.findall(text)]
    single = sum(runs)
    group3 = sum(-(-n // 3) for n in runs)
    per_tokenizer = {
        m["tokenizer"]: {
            "as_trained": m["digit_tokens"],
            "tokens": m["tokens"],
            "digit_token_share": m["digit_token_share"],
            "tokens_if_single": m["tokens"] - m["digit_tokens"] + single,
            "tokens_if_group3": m["tokens"] - m["digit_tokens"] + group3,
        }
        for m in metrics
    }
    return {
        "digit_runs": len(runs),
        "digit_chars": single,
        "single": single,
        "group3": group3,
        "per_tokenizer": per_tokenizer,
    }
