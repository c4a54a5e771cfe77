"""A byte-level BPE `tokenizers.Tokenizer` -> an encoder on OpenAI's tiktoken core: the same ids, faster.

tiktoken cuts text with one regex and merges bytes by rank; `tokenizers` runs a chain of
pre-tokenizers and merges by pair priority. They give the same ids when (1) the chain is one regex
plus the byte map: GPT-2's ByteLevel, Llama-3 / cl100k's Split + ByteLevel, domainlm's Digits +
ByteLevel (rewritten below as one regex); (2) a token's rank is the priority of the merge that
makes it; (3) two adjacent symbols never spell a token by another split than its own merge
(tiktoken would join them, `tokenizers` would not). (3) holds for trained vocabularies in
practice but does not follow from the files, and the two regex engines (fancy-regex, Oniguruma)
may know different Unicode versions, so equality is tested, not assumed: `check_fast_encoder`
compares ids with `tokenizers` on the adversarial probes (bpe_probes.py), on every token's own
text and on the caller's sample texts, and keeps `tokenizers` on any difference. Anything it does
not translate also keeps `tokenizers`, with the reason: normalizers, Unigram and WordPiece, byte
fallback, dropout, subword prefixes, added tokens that strip or match whole words.

Text with lone surrogates (a JSON "\\ud800" escape): `tokenizers` refuses it (TypeError), tiktoken
replaces it. Both encoders here apply tiktoken's rule first (a valid pair becomes its character, a
lone surrogate U+FFFD), so they agree on such text too.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from typing import Protocol

import numpy as np
from tokenizers import Tokenizer

from domainlm.machine import usable_cores
from domainlm.tokenizer.bpe_probes import adversarial_texts
from domainlm.tokenizer.load import byte_decoder

log = logging.getLogger(__name__)

ENCODER_TIKTOKEN = "tiktoken"
ENCODER_TOKENIZERS = "tokenizers"
# The regex of `tokenizers`' ByteLevel(use_regex=True), which is GPT-2's.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_CHUNKS_PER_THREAD = 4  # tasks per thread in a batch: balances uneven documents, little overhead

# Unigram keeps `tokenizers`, measured: on domainlm's Unigram (SentencePiece, vocab 8000, trained on
# the four shipped samples; tokenizer.json beside the kept sentencepiece.model), SentencePiece's own
# encoder (num_threads=2) took 1.3 CPU-s for the 16 MB where `tokenizers` took 7.5-8.4, but gave
# other ids on 10 of the 1495 documents. Its Viterbi keeps a document's running path score in a
# 32-bit float, so deep into a long document near-ties flip: 5,545 tokens into one, 'In' + 't'
# (-15.0634) lost to 'I' + 'nt' (-15.0686); on that line alone SentencePiece also picks 'In' + 't'.
# `tokenizers` sums in float64. Faster but not identical, so not used.


class NotConvertible(Exception):
    """The tokenizer has something tiktoken cannot reproduce; the message says what."""


def replace_surrogates(text: str) -> str:
    """tiktoken's rule for a str that is not valid Unicode: pairs joined, lone surrogates -> U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class Encoder(Protocol):
    """Texts -> one array of token ids each, no special tokens added; `name` goes to the manifest."""

    name: str

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]: ...


class TokenizersEncoder:
    """The reference: `tokenizers`' encode_batch_fast (Rust threads over the batch, GIL released)."""

    name = ENCODER_TOKENIZERS

    def __init__(self, tokenizer: Tokenizer, reason: str = ""):
        self.tokenizer = tokenizer
        self.reason = reason  # why the fast encoder is not used, for the log

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        texts = list(texts)
        try:
            encodings = self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        except TypeError:  # a str holding surrogates (a text that is not a str is a bug: re-raised)
            if not all(isinstance(t, str) for t in texts):
                raise
            encodings = self.tokenizer.encode_batch_fast(
                [replace_surrogates(t) for t in texts], add_special_tokens=False
            )
        return [np.asarray(e.ids, dtype=np.uint32) for e in encodings]


class TiktokenEncoder:
    """tiktoken's CoreBPE built from a `tokenizers` BPE; ids are the tokenizer's own."""

    name = ENCODER_TIKTOKEN

    def __init__(self, encoding, id_of_rank: np.ndarray | None, num_threads: int | None = None):
        self.encoding = encoding  # tiktoken.Encoding
        self.id_of_rank = id_of_rank  # None when tiktoken's ranks are the tokenizer's ids
        self.num_threads = num_threads or usable_cores()

    def encode(self, text: str) -> np.ndarray:
        # Special tokens are split out everywhere, as `tokenizers` splits added tokens out of any text.
        # The Rust call releases the GIL, so the batch threads below run on all cores.
        try:
            ranks = self.encoding.encode_to_numpy(text, allowed_special="all")
        except UnicodeEncodeError:
            ranks = self.encoding.encode_to_numpy(replace_surrogates(text), allowed_special="all")
        return ranks if self.id_of_rank is None else self.id_of_rank[ranks]

    def _encode_chunk(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [self.encode(text) for text in texts]

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        texts = list(texts)
        if self.num_threads == 1 or len(texts) < 2:
            return self._encode_chunk(texts)
        size = max(1, -(-len(texts) // (self.num_threads * _CHUNKS_PER_THREAD)))
        chunks = [texts[i : i + size] for i in range(0, len(texts), size)]
        with ThreadPoolExecutor(self.num_threads) as pool:
            return list(chain.from_iterable(pool.map(self._encode_chunk, chunks)))


# ---- the conversion: tokenizer.json -> regex, mergeable ranks, special tokens --------------------


def _digits_pattern(individual: bool, number: str | None = None) -> str:
    """Digits(individual_digits) then GPT-2's regex on each piece, as one regex; `number` replaces
    the digit-run alternative (domainlm's digits="group3": Split(\\p{N}{1,3}) isolated + ByteLevel).

    A number never joins a space before it (its piece starts at the digit), and a whitespace run
    that ends at a number ends its piece there, so `\\s+(?!\\S)` would have matched all of it:
    `\\s+(?=\\p{N})` does that here. (Digits' is_numeric is \\p{N}: categories Nd, Nl, No.)"""
    number = number or (r"\p{N}" if individual else r"\p{N}+")
    return rf"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{{L}}+|{number}| ?[^\s\p{{L}}\p{{N}}]+|\s+(?=\p{{N}})|\s+(?!\S)|\s+"""


def _split_pattern(split: dict) -> str:
    """Split(regex, behavior="isolated"): matches and the gaps between them are the pieces."""
    regex = (split.get("pattern") or {}).get("Regex")
    if regex is None:
        raise NotConvertible("pre-tokenizer Split with a literal string pattern (not a regex)")
    if split.get("behavior") != "Isolated" or split.get("invert"):
        raise NotConvertible(f"pre-tokenizer Split with behavior {split.get('behavior')} / invert")
    # tiktoken drops text its regex does not match; `tokenizers` keeps each gap as a piece. The
    # second branch takes such a gap (it never runs for patterns that match every character).
    return f"(?:{regex})|(?:(?!(?:{regex}))[\\s\\S])+"


_DIGIT_GROUPS = r"\p{N}{1,3}"  # train.GROUP3_DIGITS


def _is_digit_groups(split: dict) -> bool:
    """The Split step of domainlm's digits="group3": isolated runs of up to 3 digits."""
    regex = (split.get("pattern") or {}).get("Regex")
    return regex == _DIGIT_GROUPS and split.get("behavior") == "Isolated" and not split.get("invert")


def _pattern(pre: dict | None) -> str:
    """The one regex equivalent to the pre-tokenizer, which must end with the byte map."""
    steps = [] if pre is None else pre["pretokenizers"] if pre["type"] == "Sequence" else [pre]
    kinds = [step["type"] for step in steps]
    if not steps or kinds[-1] != "ByteLevel":
        raise NotConvertible(f"pre-tokenizer {' + '.join(kinds) or 'none'} is not byte-level")
    byte_level = steps[-1]
    if byte_level.get("add_prefix_space"):
        raise NotConvertible("ByteLevel add_prefix_space=True")
    use_regex = byte_level.get("use_regex", True)
    if kinds == ["ByteLevel"] and use_regex:
        return GPT2_PATTERN
    if kinds == ["Digits", "ByteLevel"] and use_regex:
        return _digits_pattern(bool(steps[0].get("individual_digits")))
    if kinds == ["Split", "ByteLevel"] and not use_regex:
        return _split_pattern(steps[0])
    if kinds == ["Split", "ByteLevel"] and _is_digit_groups(steps[0]):
        # A digit group is its own piece, as with Digits, so the same rewrite holds with {1,3}.
        return _digits_pattern(False, number=_DIGIT_GROUPS)
    raise NotConvertible(f"pre-tokenizer {' + '.join(kinds)} (ByteLevel use_regex={use_regex})")


def _check_model(spec: dict) -> None:
    model = spec["model"]
    if model.get("type") != "BPE":
        raise NotConvertible(f"model {model.get('type')} (only BPE converts)")
    for key in ("dropout", "byte_fallback", "continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise NotConvertible(f"BPE {key}={model[key]!r}")
    for key in ("normalizer", "truncation", "padding"):
        if spec.get(key) is not None:
            raise NotConvertible(f"{key} {json.dumps(spec[key])[:60]} is set")


def _merge_pairs(merges: list) -> Iterable[tuple[str, str]]:
    for merge in merges:  # ["a", "b"] in current files, "a b" in older ones
        yield tuple(merge) if isinstance(merge, list) else tuple(merge.split(" ", 1))


def _mergeable_ranks(model: dict, added_ids: set[int]) -> tuple[dict[bytes, int], list[int]]:
    """(bytes -> the tokenizer's id for every token tiktoken may produce, ids in merge order)."""
    vocab: dict[str, int] = model["vocab"]
    table = byte_decoder()
    missing = [char for char in table if char not in vocab]
    if missing:
        raise NotConvertible(f"the vocabulary lacks {len(missing)} of the 256 byte tokens")
    ranks = {bytes([byte]): vocab[char] for char, byte in table.items()}
    made = set(table)
    merged_ids = []
    for left, right in _merge_pairs(model["merges"]):
        if left not in made or right not in made:
            raise NotConvertible(f"merge {left!r} + {right!r} uses a token no merge makes")
        token = left + right
        if token in made:
            raise NotConvertible(f"two merges make the token {token!r}")
        made.add(token)
        ranks[bytes(table[c] for c in token)] = vocab[token]
        merged_ids.append(vocab[token])
    if model.get("ignore_merges"):
        # `tokenizers` then takes a whole piece found in the vocabulary as one token, as tiktoken
        # always does; equal only when every such token is also one tiktoken knows.
        unmade = [t for t, i in vocab.items() if t not in made and i not in added_ids]
        if unmade:
            raise NotConvertible(
                f"ignore_merges with {len(unmade)} tokens no merge makes, e.g. {unmade[0]!r}"
            )
    return ranks, merged_ids


def _special_tokens(spec: dict, tokenizer: Tokenizer) -> dict[str, int]:
    """Added tokens as tiktoken special tokens; only those that match as plain strings convert."""
    added = spec.get("added_tokens") or []
    if added and tokenizer.encode_special_tokens:
        raise NotConvertible("encode_special_tokens=True")
    for token in added:
        flags = [k for k in ("lstrip", "rstrip", "single_word") if token.get(k)]
        if flags or not token["content"]:
            raise NotConvertible(f"added token {token['content']!r} with {', '.join(flags) or 'no text'}")
    # `tokenizers` takes the longest of two added tokens that start at one place, tiktoken the first
    # in its own order; and it matches non-normalized tokens before normalized ones.
    contents = sorted(t["content"] for t in added)
    for shorter, longer in zip(contents, contents[1:], strict=False):
        if longer.startswith(shorter):
            raise NotConvertible(f"added tokens {shorter!r} and {longer!r} start alike")
    kinds = [[t["content"] for t in added if bool(t.get("normalized")) is flag] for flag in (False, True)]
    for a in kinds[0]:
        for b in kinds[1]:
            if _overlap(a, b):
                raise NotConvertible(f"added tokens {a!r} and {b!r} overlap")
    return {t["content"]: t["id"] for t in added}


def _overlap(a: str, b: str) -> bool:
    """True when occurrences of a and b can overlap in some text."""
    if a in b or b in a:
        return True
    return any(a.endswith(b[:k]) or b.endswith(a[:k]) for k in range(1, min(len(a), len(b))))


def convert(tokenizer: Tokenizer, num_threads: int | None = None) -> TiktokenEncoder:
    """The tiktoken encoder for `tokenizer` (not yet checked); NotConvertible says why there is none."""
    import tiktoken

    spec = json.loads(tokenizer.to_str())
    _check_model(spec)
    pattern = _pattern(spec.get("pre_tokenizer"))
    specials = _special_tokens(spec, tokenizer)
    ranks, merged_ids = _mergeable_ranks(spec["model"], set(specials.values()))
    id_of_rank = None
    in_order = all(a < b for a, b in zip(merged_ids, merged_ids[1:], strict=False))
    if not in_order or set(specials.values()) & set(ranks.values()):
        # tiktoken ranks must follow merge order and be distinct: renumber, then map back to ids.
        id_of_rank = np.fromiter(chain(ranks.values(), specials.values()), dtype=np.uint32)
        ranks = {token: rank for rank, token in enumerate(ranks)}  # bytes first, then merge order
        specials = {token: len(ranks) + k for k, token in enumerate(specials)}
    try:
        encoding = tiktoken.Encoding(
            "domainlm-bpe", pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials
        )
    except ValueError as exc:  # the regex does not compile in Rust's fancy-regex
        raise NotConvertible(f"tiktoken rejects the pre-tokenizer regex ({exc})") from None
    return TiktokenEncoder(encoding, id_of_rank, num_threads)


def token_texts(tokenizer: Tokenizer) -> list[str]:
    """Every vocabulary token's own text (valid UTF-8 only), alone and run together in groups."""
    table = byte_decoder()
    texts = []
    for token in tokenizer.get_vocab(with_added_tokens=False):
        try:
            texts.append(bytes(table[c] for c in token).decode("utf-8"))
        except (KeyError, UnicodeDecodeError):
            continue
    texts.sort()
    return texts + ["".join(texts[i : i + 48]) for i in range(0, len(texts), 48)]


def first_difference(
    texts: Sequence[str], wanted: Sequence[Sequence[int]], got: Sequence[Sequence[int]]
) -> str | None:
    """The first text whose two id sequences differ, or None when all agree."""
    for text, want, have in zip(texts, wanted, got, strict=True):
        if not np.array_equal(want, have):
            return text
    return None


def _difference_note(text: str) -> str:
    return f"tiktoken's ids differ from tokenizers' on {text[:60]!r}"


# Conversion + probes cost ~1 CPU-second for a 50k vocabulary; one process (tests, a mix after a
# coverage report) may ask again for the same tokenizer, keyed here by its serialized form.
_CHECKED: dict[tuple[str, bool], tuple[TiktokenEncoder | None, str]] = {}
_CHECKED_MAX = 8


def _checked_conversion(tokenizer: Tokenizer) -> tuple[TiktokenEncoder | None, str]:
    # encode_special_tokens is not in the serialized form
    serialized = tokenizer.to_str().encode("utf-8")
    key = (hashlib.sha256(serialized).hexdigest(), tokenizer.encode_special_tokens)
    if key not in _CHECKED:
        try:
            fast, reason = convert(tokenizer), ""
        except NotConvertible as exc:
            return None, str(exc)  # found from the files alone: cheap, not kept
        added = [t.content for t in tokenizer.get_added_tokens_decoder().values()]
        texts = [*adversarial_texts(added), *token_texts(tokenizer)]
        differs = first_difference(
            texts, TokenizersEncoder(tokenizer).encode_batch(texts), fast.encode_batch(texts)
        )
        if differs is not None:
            fast, reason = None, _difference_note(differs)
        while len(_CHECKED) >= _CHECKED_MAX:
            del _CHECKED[next(iter(_CHECKED))]
        _CHECKED[key] = (fast, reason)
    return _CHECKED[key]


def check_fast_encoder(
    tokenizer: Tokenizer, probe_texts: Sequence[str] = (), num_threads: int | None = None
) -> tuple[TiktokenEncoder | None, str]:
    """(the fast encoder, "") when it converts and agrees with `tokenizers` on the built-in probes,
    every token's text and `probe_texts`; else (None, why not)."""
    fast, reason = _checked_conversion(tokenizer)
    if fast is None:
        return None, reason
    fast = TiktokenEncoder(fast.encoding, fast.id_of_rank, num_threads)
    if probe_texts:
        probes = list(probe_texts)
        differs = first_difference(
            probes, TokenizersEncoder(tokenizer).encode_batch(probes), fast.encode_batch(probes)
        )
        if differs is not None:
            return None, _difference_note(differs)
    return fast, reason


def build_fast_encoder(
    tokenizer: Tokenizer, probe_texts: Sequence[str] = (), num_threads: int | None = None
) -> TiktokenEncoder | None:
    """The tiktoken encoder when it provably agrees on the probes and `probe_texts`, else None."""
    fast, reason = check_fast_encoder(tokenizer, probe_texts, num_threads)
    if fast is None:
        log.debug("encoder: tokenizers (no tiktoken conversion: %s)", reason)
    return fast


def build_encoder(
    tokenizer: Tokenizer, probe_texts: Sequence[str] = (), num_threads: int | None = None
) -> Encoder:
    """The fastest encoder proved to give `tokenizer`'s ids: tiktoken when it converts, else `tokenizers`."""
    fast, reason = check_fast_encoder(tokenizer, probe_texts, num_threads)
    return fast if fast is not None else TokenizersEncoder(tokenizer, reason)
