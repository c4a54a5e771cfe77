"""A trained Unigram tokenizer -> the same tokenizer with a run-independent piece order and scores.

`tokenizers`' UnigramTrainer is deterministic in which pieces it keeps but not in how it writes
them: (1) its EM sums run over hash-map order, so scores differ in the last bits between runs; (2)
characters it must keep but never chose (here: byte symbols) get scores min_score + k * 1e-4 in
hash-set order. Rounding fixes (1); re-assigning (2) in code-point order fixes the rest; pieces are
then written specials first, then by score and text, so ids are stable too.
"""

from __future__ import annotations

import json

from tokenizers import Tokenizer

_SCORE_DECIMALS = 9  # far above the trainer's float noise (~1e-15), far below real score gaps
_PENALTY_STEP = 1e-4  # the trainer's min_score_penalty_delta
_GRID_TOLERANCE = 1e-7


def _penalty_pieces(pieces: list[tuple[str, float]]) -> list[str]:
    """Single characters whose scores sit on the trainer's min_score + k * step grid.

    Real pieces that share the minimum score are caught too; re-spacing them by 1e-4 is harmless.
    """
    floor = min(score for _, score in pieces)
    found = []
    for piece, score in pieces:
        steps = (score - floor) / _PENALTY_STEP
        on_grid = abs(steps - round(steps)) * _PENALTY_STEP < _GRID_TOLERANCE
        if len(piece) == 1 and on_grid and steps <= len(pieces):
            found.append(piece)
    return found


def canonicalize_unigram(tokenizer: Tokenizer, num_special: int) -> Tokenizer:
    """Rewrite the Unigram vocab deterministically; the first `num_special` entries stay in place."""
    data = json.loads(tokenizer.to_str())
    vocab = [(piece, float(score)) for piece, score in data["model"]["vocab"]]
    specials, pieces = vocab[:num_special], vocab[num_special:]
    scores = dict(pieces)
    penalty = _penalty_pieces(pieces)
    floor = min(scores.values())
    # Sorted by code point, earlier characters get the higher penalty score, as a stable rule.
    for k, piece in enumerate(sorted(penalty, reverse=True)):
        scores[piece] = floor + k * _PENALTY_STEP
    ordered = sorted(scores.items(), key=lambda item: (-round(item[1], _SCORE_DECIMALS), item[0]))
    data["model"]["vocab"] = [[p, round(s, _SCORE_DECIMALS)] for p, s in specials + ordered]
    unk = data["model"].get("unk_id")
    assert unk is None or unk < num_special, "unk must be one of the special tokens"
    return Tokenizer.from_str(json.dumps(data, ensure_ascii=False))
