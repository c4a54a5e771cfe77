"""Extending a Unigram (SentencePiece) base: new whole pieces in the model vocabulary, with scores.

Which new pieces: the same greedy pair merging as for BPE bases (extend.py), run on the base's own
segmentation of the domain text. Every document is encoded by the base, the ids are cut into
words at pieces that start with "▁" (SentencePiece never puts a space inside a piece), and at
byte-fallback, unknown and special tokens, which are never merged. The most frequent adjacent
pair becomes a new piece, and so on. Each new piece is recorded with the base ids it spans, which
drive the mean-of-pieces embedding initialization (pretrain/vocab_init.py).

How they enter the tokenizer, and why not as added tokens: a Unigram model segments by Viterbi
over the pieces whose strings occur in the text. A new vocabulary piece only adds lattice edges
where its string occurs, so on text that does not contain it the lattice, and the segmentation,
is exactly the base's (the one global quantity, the unknown-character score, derives from the
lowest piece score, so no new score goes below the base minimum). An `AddedToken` would also
leave other text alone, but it is cut out of the text before the model runs, wherever it matches,
even across the base's own word pieces, and the text on either side is then segmented alone:
"▁licensed" with an added "▁license" becomes "▁license" + "d" where the base would never produce
that pair. Vocabulary pieces compete inside the Viterbi instead.

The score of a new piece is the sum of the scores of the base pieces it spans plus a small bonus
per merge (`MERGE_BONUS`): where the base segmentation has those pieces side by side, the path that
uses the new piece scores higher and is chosen, and elsewhere the base path keeps winning (except
for near-ties within the bonus). So the extended tokenizer reads domain text as the base did, with
the learned pairs fused, which is what the mean-of-pieces initialization assumes.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from tokenizers import Tokenizer

from domainlm.corpus import CorpusReader
from domainlm.errors import ConfigError
from domainlm.progress import make_progress
from domainlm.tokenizer.load import LoadedTokenizer

SPACE = "▁"  # SentencePiece's visible space: a piece that starts with it starts a word
# Score bonus per merge a new piece stands for: far above float rounding of path sums (~1e-12),
# far below the score gaps between competing segmentations, so it only breaks the tie in favour
# of the fused piece where the base pieces already sit side by side.
MERGE_BONUS = 1e-3
_BYTE_PIECE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")


def unigram_spec(base: LoadedTokenizer) -> dict:
    spec = json.loads(base.tokenizer.to_str())
    if spec["model"].get("type") != "Unigram":
        raise ConfigError(f"--base {base.path}: not a Unigram tokenizer ({spec['model'].get('type')})")
    return spec


def model_pieces(spec: dict) -> dict[int, str]:
    """id -> piece of the model vocabulary: a [piece, score] list (Unigram) or a piece -> id map (BPE)."""
    vocab = spec["model"]["vocab"]
    if isinstance(vocab, dict):
        return {index: piece for piece, index in vocab.items()}
    return {index: piece for index, (piece, _) in enumerate(vocab)}


def barrier_ids(base: LoadedTokenizer, spec: dict) -> set[int]:
    """Ids never merged: special/added tokens, unk, and the byte-fallback pieces."""
    ids = set(base.tokenizer.get_added_tokens_decoder())
    unk = spec["model"].get("unk_id", base.tokenizer.token_to_id(spec["model"].get("unk_token") or ""))
    if unk is not None:
        ids.add(unk)
    if spec["model"].get("byte_fallback"):
        ids.update(i for i, piece in model_pieces(spec).items() if _BYTE_PIECE.match(piece))
    return ids


def split_words(ids: list[int], starts: set[int], barriers: set[int]) -> list[tuple[int, ...]]:
    """Cut one document's ids into runs that may merge: before each word start, around barriers."""
    words, current = [], []
    for index in ids:
        if index in barriers or index in starts:
            if len(current) > 1:
                words.append(tuple(current))
            current = [] if index in barriers else [index]
        else:
            current.append(index)
    if len(current) > 1:
        words.append(tuple(current))
    return words


def count_segmented_words(
    base: LoadedTokenizer, corpora: list[tuple[str, Path]], quiet: bool = True, batch_docs: int = 256
) -> Counter:
    """The base's segmentation of the domain text as mergeable words (id tuples) with their counts.
    Also serves SentencePiece BPE bases (Llama-2: byte fallback, "▁" for spaces, no pre-tokenizer)."""
    spec = json.loads(base.tokenizer.to_str())
    barriers = barrier_ids(base, spec)
    starts = {i for i, piece in model_pieces(spec).items() if piece.startswith(SPACE)}
    tokenizer = Tokenizer.from_str(base.tokenizer.to_str())
    tokenizer.no_truncation()
    tokenizer.no_padding()
    words: Counter = Counter()

    def add(batch: list[str]) -> None:
        for encoding in tokenizer.encode_batch_fast(batch, add_special_tokens=False):
            words.update(split_words(encoding.ids, starts, barriers))

    with make_progress(quiet) as progress:
        task = progress.add_task("segmenting domain text (docs)", total=None)
        batch: list[str] = []
        for name, path in corpora:
            for doc in CorpusReader([path], source=name):
                batch.append(doc.text)
                progress.advance(task)
                if len(batch) == batch_docs:
                    add(batch)
                    batch = []
        if batch:
            add(batch)
    return words


def _vocab_up_to(base: LoadedTokenizer, spec: dict) -> list[list]:
    """The model's [piece, score] list, extended to base.vocab_size rows: added tokens with ids past
    the model's pieces (T5's sentinels) take their own rows at the lowest score, so new pieces get
    the ids after them."""
    vocab = [list(entry) for entry in spec["model"]["vocab"]]
    lowest = min(score for _, score in vocab)
    added = base.tokenizer.get_added_tokens_decoder()
    for index in range(len(vocab), base.vocab_size):
        if index not in added:
            raise ConfigError(
                f"--base {base.path}: id {index} is neither a model piece nor an added token; "
                "extend needs contiguous ids"
            )
        vocab.append([added[index].content, lowest])
    return vocab


def build_extended_unigram(base: LoadedTokenizer, added: list[dict]) -> Tokenizer:
    """The base tokenizer.json with the new pieces appended to the Unigram vocabulary (see module doc)."""
    spec = unigram_spec(base)
    vocab = _vocab_up_to(base, spec)
    lowest = min(score for _, score in vocab)
    for entry in added:
        pieces = entry["base_ids"]
        score = sum(vocab[i][1] for i in pieces) + MERGE_BONUS * (len(pieces) - 1)
        vocab.append([entry["token"], max(score, lowest)])
        entry["score"] = vocab[-1][1]
        entry["text"] = entry["token"].replace(SPACE, " ")
    spec["model"]["vocab"] = vocab
    return Tokenizer.from_str(json.dumps(spec, ensure_ascii=False))
