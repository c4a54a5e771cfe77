"""Documents -> token ids and each token's character span, for the coverage report's counts.

The report needs ids (tokens, unknown and byte-fallback counts, vocabulary used) and, to count
split words, which characters each token covers. `tokenizers`' `encode_batch` gives both but
spends most of the report's time computing offsets. For a byte-level BPE that tiktoken reproduces
exactly (fast_bpe.py: proved on probes, else not used) the spans follow from the ids alone: a
byte-level token stands for a fixed run of bytes and, with no normalizer, the tokens' bytes are
the text's UTF-8 bytes in order. A token covers the characters its first to last byte belong to,
which is how `tokenizers` maps byte-level offsets (a piece of a character covers that character).
`tokenizers` may also trim whitespace off a token's span (ByteLevel trim_offsets); whitespace is
never part of a word, so which words a token overlaps, the only use of spans here, is the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from domainlm.tokenizer.fast_bpe import ENCODER_TOKENIZERS, TiktokenEncoder, build_encoder
from domainlm.tokenizer.load import LoadedTokenizer, byte_decoder

Spans = tuple[np.ndarray, np.ndarray]  # (ids int64 (n,), character offsets int64 (n, 2))
_UTF8_CONTINUATION = 0x80  # bytes 10xxxxxx continue a character


class SpanEncoder(Protocol):
    """Texts -> (ids, character spans) per text, no special tokens added; `name` goes to the report."""

    name: str

    def encode(self, texts: Sequence[str]) -> list[Spans]: ...


class TokenizersSpans:
    """The reference: `tokenizers`' encode_batch with its offsets."""

    name = ENCODER_TOKENIZERS

    def __init__(self, loaded: LoadedTokenizer):
        self.tokenizer = loaded.tokenizer

    def encode(self, texts: Sequence[str]) -> list[Spans]:
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [
            (np.asarray(e.ids, dtype=np.int64), np.asarray(e.offsets, dtype=np.int64).reshape(-1, 2))
            for e in encodings
        ]


def token_byte_lengths(loaded: LoadedTokenizer) -> np.ndarray:
    """UTF-8 bytes each id stands for: one per character of a byte-level token, an added token's text."""
    lengths = np.zeros(loaded.vocab_size, dtype=np.int64)
    table = byte_decoder()
    for token, index in loaded.tokenizer.get_vocab(with_added_tokens=False).items():
        lengths[index] = len(token) if all(ch in table for ch in token) else -1
    for index, added in loaded.tokenizer.get_added_tokens_decoder().items():
        lengths[index] = len(added.content.encode("utf-8"))
    return lengths


def spans_from_ids(ids: np.ndarray, byte_lengths: np.ndarray, text: str) -> np.ndarray | None:
    """Character spans of byte-level tokens `ids` of `text`; None when their bytes do not spell it."""
    lengths = byte_lengths[ids]
    try:
        utf8 = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    except UnicodeEncodeError:  # lone surrogates: the encoder saw U+FFFD instead
        return None
    if (lengths < 1).any() or int(lengths.sum()) != len(utf8):
        return None
    if not len(ids):
        return np.zeros((0, 2), dtype=np.int64)
    char_of_byte = np.cumsum((utf8 & 0xC0) != _UTF8_CONTINUATION) - 1
    ends = np.cumsum(lengths)
    return np.stack([char_of_byte[ends - lengths], char_of_byte[ends - 1] + 1], axis=1)


class FastSpans:
    """tiktoken's ids (fast_bpe.py) and spans computed from them; a text whose ids do not spell
    its bytes (never seen; kept as a guard) is encoded again by `tokenizers`."""

    def __init__(self, loaded: LoadedTokenizer, encoder: TiktokenEncoder):
        self.encoder = encoder
        self.name = encoder.name
        self.byte_lengths = token_byte_lengths(loaded)
        self.reference = TokenizersSpans(loaded)

    def encode(self, texts: Sequence[str]) -> list[Spans]:
        texts = list(texts)
        result: list[Spans] = []
        for text, ids in zip(texts, self.encoder.encode_batch(texts), strict=True):
            ids = ids.astype(np.int64)
            spans = spans_from_ids(ids, self.byte_lengths, text)
            result.append((ids, spans) if spans is not None else self.reference.encode([text])[0])
        return result


def span_encoder(loaded: LoadedTokenizer, probe_texts: Sequence[str] = (), fast: bool = True) -> SpanEncoder:
    """The fast spans when the tokenizer is byte-level and tiktoken is proved to give its ids (on the
    built-in probes and `probe_texts`); else `tokenizers`. `fast=False` forces `tokenizers`."""
    if fast and loaded.byte_level:
        encoder = build_encoder(loaded.tokenizer, probe_texts)
        if isinstance(encoder, TiktokenEncoder):
            return FastSpans(loaded, encoder)
    return TokenizersSpans(loaded)
