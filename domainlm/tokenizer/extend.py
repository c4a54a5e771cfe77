"""Base BPE or Unigram tokenizer + domain corpora -> extended tokenizer dir + added_tokens_map.json (contract B).

BPE bases (GPT-2, Llama-3 style Split + ByteLevel, `domainlm tokenizer train --model bpe`): the new tokens are what BPE training would add next if it kept going on the domain text: starting
from the base tokenizer's own segmentation of every domain word, repeatedly merge the adjacent pair
that occurs most often. Each merge is appended after the base merges, so the extended model first
tokenizes exactly like the base and then applies the new merges: every new token is produced by
the model itself (not matched as an added string), base behaviour on other text is unchanged, and
the tokens a merge saves on the domain corpus are exactly its pair count at that step.
(With `ignore_merges`, as Llama-3 sets it, a word spelled exactly as a new token becomes that token
directly; the count of saved tokens may then differ slightly from the prediction.)
Unigram bases (SentencePiece: T5 style, `--model unigram`): the same pair merging on the base's
segmentation, the new pieces entering the Unigram vocabulary with scores; see extend_unigram.py.
SentencePiece BPE bases (Llama-2: byte fallback, no word split) learn their pairs that way too
(within "▁" words, never byte pieces) and get them as appended merges.
Both keep the base's ids on any text that contains none of the new tokens' strings.
"""

from __future__ import annotations

import heapq
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import Tokenizer

from domainlm.corpus import CorpusReader
from domainlm.corpus.fingerprint import corpus_fingerprint
from domainlm.errors import ConfigError
from domainlm.outputs import atomic_output_dir, check_output_dir, write_json
from domainlm.progress import make_progress
from domainlm.tokenizer.extend_unigram import build_extended_unigram, count_segmented_words
from domainlm.tokenizer.load import LoadedTokenizer, load_tokenizer

log = logging.getLogger(__name__)

MANIFEST_FORMAT = "domainlm.tokenizer_extension/v1"


@dataclass
class MergeState:
    """Unique domain words as id sequences under the current merges, with pair counts and index."""

    words: list[list[int]]
    freqs: list[int]
    pair_counts: Counter = field(default_factory=Counter)
    pair_words: dict[tuple[int, int], set[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for index in range(len(self.words)):
            self._count(index, +1)

    def _count(self, index: int, sign: int) -> None:
        word, freq = self.words[index], self.freqs[index]
        for pair in zip(word, word[1:], strict=False):
            self.pair_counts[pair] += sign * freq
            if sign > 0:
                self.pair_words.setdefault(pair, set()).add(index)

    def merge(self, pair: tuple[int, int], new_id: int) -> set[tuple[int, int]]:
        """Replace every non-overlapping occurrence of `pair` (left to right, as BPE applies it);
        returns the pairs that now contain `new_id` (the only pairs whose counts can grow)."""
        created: set[tuple[int, int]] = set()
        for index in sorted(self.pair_words.pop(pair, ())):
            word = self.words[index]
            self._count(index, -1)
            merged, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
                    merged.append(new_id)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            self.words[index] = merged
            self._count(index, +1)
            created.update(p for p in zip(merged, merged[1:], strict=False) if new_id in p)
        self.pair_counts.pop(pair, None)
        return created


def _model_type(base: LoadedTokenizer) -> str:
    kind = json.loads(base.tokenizer.to_str())["model"].get("type")
    if kind not in ("BPE", "Unigram"):
        raise ConfigError(
            f"--base {base.path}: extend needs a BPE (GPT-2, Llama-3 style) or Unigram (SentencePiece, "
            f"T5 style) tokenizer, got {kind}; train one with `domainlm tokenizer train` or use gpt2"
        )
    return kind


def _bpe_spec(base: LoadedTokenizer) -> dict:
    spec = json.loads(base.tokenizer.to_str())
    if spec["model"].get("type") != "BPE":
        raise ConfigError(f"--base {base.path}: not a BPE tokenizer ({spec['model'].get('type')})")
    return spec


def count_domain_words(base: LoadedTokenizer, corpora: list[tuple[str, Path]], quiet: bool = True) -> Counter:
    """Pre-tokenized words of the domain text (after the base normalizer) with their counts."""
    words: Counter = Counter()
    normalizer, pre_tokenizer = base.tokenizer.normalizer, base.tokenizer.pre_tokenizer
    with make_progress(quiet) as progress:
        task = progress.add_task("counting domain words (docs)", total=None)
        for name, path in corpora:
            for doc in CorpusReader([path], source=name):
                text = normalizer.normalize_str(doc.text) if normalizer else doc.text
                pieces = pre_tokenizer.pre_tokenize_str(text) if pre_tokenizer else [(text, None)]
                words.update(piece for piece, _ in pieces)
                progress.advance(task)
    return words


def _join(left: str, right: str, prefix: str | None) -> str:
    """The string of merged tokens, dropping the continuing-subword prefix ('##') of the right one."""
    return left + (right[len(prefix) :] if prefix and right.startswith(prefix) else right)


def learn_merges(base: LoadedTokenizer, words: Counter, num_tokens: int, min_frequency: int) -> list[dict]:
    """Greedy BPE continuation: up to `num_tokens` merges, each a new token absent from the base."""
    spec = _bpe_spec(base)
    prefix = spec["model"].get("continuing_subword_prefix")
    ordered = sorted(words.items())  # fixed order -> deterministic ties and output
    sequences = [[t.id for t in base.tokenizer.model.tokenize(w)] for w, _ in ordered]
    return learn_pairs(
        base, sequences, [c for _, c in ordered], num_tokens, min_frequency,
        join=lambda left, right: _join(left, right, prefix),
    )  # fmt: skip


def learn_pairs(
    base: LoadedTokenizer,
    sequences: list[list[int]],
    freqs: list[int],
    num_tokens: int,
    min_frequency: int,
    join: Callable[[str, str], str] = lambda left, right: left + right,
) -> list[dict]:
    """Repeatedly merge the most frequent adjacent pair of `sequences` (base ids, each with a count)
    into a new token absent from the base; ties go to the smaller pair of strings."""
    state = MergeState([list(s) for s in sequences], list(freqs))
    strings = {i: base.tokenizer.id_to_token(i) for word in state.words for i in word}
    expansion = {i: [i] for i in strings}
    existing = set(base.tokenizer.get_vocab(with_added_tokens=True))
    next_id = base.vocab_size
    heap = [(-count, strings[a], strings[b], a, b) for (a, b), count in state.pair_counts.items()]
    heapq.heapify(heap)
    added: list[dict] = []
    blocked: set[tuple[int, int]] = set()
    while heap and len(added) < num_tokens:
        neg, _, _, a, b = heapq.heappop(heap)
        count = state.pair_counts.get((a, b), 0)
        if count < min_frequency or (a, b) in blocked:
            continue
        if -neg != count:  # stale entry: re-queue with the current count
            heapq.heappush(heap, (-count, strings[a], strings[b], a, b))
            continue
        token = join(strings[a], strings[b])
        if token in existing:  # the base has it but never builds it from these pieces
            blocked.add((a, b))
            continue
        existing.add(token)
        strings[next_id], expansion[next_id] = token, expansion[a] + expansion[b]
        added.append({"token": token, "id": next_id, "merge": [strings[a], strings[b]], "frequency": count,
                      "base_ids": expansion[next_id]})  # fmt: skip
        for pair in sorted(state.merge((a, b), next_id)):
            heapq.heappush(heap, (-state.pair_counts[pair], strings[pair[0]], strings[pair[1]], *pair))
        next_id += 1
    return added


def build_extended(base: LoadedTokenizer, added: list[dict]) -> Tokenizer:
    """The base tokenizer.json with the new tokens in the model vocab and their merges appended."""
    spec = _bpe_spec(base)
    for entry in added:
        spec["model"]["vocab"][entry["token"]] = entry["id"]
        spec["model"]["merges"].append(entry["merge"])
    return Tokenizer.from_str(json.dumps(spec, ensure_ascii=False))


def count_tokens(tokenizer: Tokenizer, corpora: list[tuple[str, Path]], batch_docs: int = 256) -> int:
    """Tokens the tokenizer needs for every document of `corpora` (no special tokens, no truncation)."""
    tokenizer = Tokenizer.from_str(tokenizer.to_str())  # a copy: the saved one keeps the base's settings
    tokenizer.no_truncation()
    tokenizer.no_padding()
    total, batch = 0, []
    for name, path in corpora:
        for doc in CorpusReader([path], source=name):
            batch.append(doc.text)
            if len(batch) == batch_docs:
                total += sum(len(e.ids) for e in tokenizer.encode_batch_fast(batch, add_special_tokens=False))
                batch = []
    if batch:
        total += sum(len(e.ids) for e in tokenizer.encode_batch_fast(batch, add_special_tokens=False))
    return total


def _save(base: LoadedTokenizer, extended: Tokenizer, out: Path) -> int:
    """Save with the base's special tokens and context length; returns the eos id (contract B)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    original = AutoTokenizer.from_pretrained(str(base.path))
    if original.eos_token is None:
        raise ConfigError(
            f"--base {base.path}: the base tokenizer has no eos_token; set one in its tokenizer_config.json"
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=extended,
        model_max_length=original.model_max_length,
        extra_special_tokens=list(original.extra_special_tokens),
        **{k: v for k, v in original.special_tokens_map.items() if k != "extra_special_tokens"},
    )
    fast.save_pretrained(str(out))
    return fast.eos_token_id


def _token_map(base: LoadedTokenizer, added: list[dict], extended: Tokenizer, pad: int | None) -> dict:
    tokens = [
        {"token": e["token"], "id": e["id"], "base_ids": e["base_ids"],
         "base_pieces": [base.tokenizer.id_to_token(i) for i in e["base_ids"]],
         "text": e.get("text", extended.decode([e["id"]])), "frequency": e["frequency"],
         **({"score": e["score"]} if "score" in e else {})}
        for e in added
    ]  # fmt: skip
    return {"base_tokenizer": str(base.path), "base_fingerprint": base.fingerprint,
            "base_vocab_size": base.vocab_size, "tokens": tokens,
            **({"pad_to_multiple_of": pad} if pad else {})}  # fmt: skip


def _round_up(count: int, multiple: int) -> int:
    return -(-count // multiple) * multiple


def _learn(
    base: LoadedTokenizer,
    kind: str,
    corpora: list[tuple[str, Path]],
    num_tokens: int,
    min_frequency: int,
    quiet: bool,
) -> list[dict]:
    """BPE: continue the merges on pre-tokenized words; Unigram: merge pairs of the base's segmentation."""
    if kind == "BPE" and not _bpe_spec(base)["model"].get("byte_fallback"):
        return learn_merges(base, count_domain_words(base, corpora, quiet=quiet), num_tokens, min_frequency)
    # Unigram, and SentencePiece BPE (Llama-2: byte fallback, often no pre-tokenizer, so a "word" would
    # be a whole document): merge pairs of the base's segmentation within "▁" words, never bytes.
    ordered = sorted(count_segmented_words(base, corpora, quiet=quiet).items())
    return learn_pairs(
        base, [list(w) for w, _ in ordered], [c for _, c in ordered], num_tokens, min_frequency
    )


def extend_tokenizer(
    base_path: Path,
    corpora: list[tuple[str, Path]],
    num_tokens: int,
    out: Path,
    min_frequency: int = 2,
    overwrite: bool = False,
    quiet: bool = True,
    pad_to_multiple_of: int | None = None,
) -> dict:
    """Learn up to `num_tokens` domain tokens, write the extended tokenizer, return its manifest.

    `pad_to_multiple_of` N is recorded in added_tokens_map.json: pretraining rounds the embedding
    rows up to a multiple of N (pretrain.vocab_init.rows_multiple, which `model.pad_vocab_to_multiple_of`
    may not contradict). The tokenizer itself gets no padding tokens: its ids stop at its vocab size,
    so it encodes and decodes exactly as without padding.
    """
    if num_tokens < 1 or min_frequency < 1:
        raise ConfigError(f"--num-tokens {num_tokens} / --min-frequency {min_frequency}: both must be >= 1")
    if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
        raise ConfigError(
            f"--pad-to-multiple-of {pad_to_multiple_of}: must be >= 1 (e.g. 128 for tensor-core shapes)"
        )
    if not corpora:
        raise ConfigError(
            "tokenizer extend needs at least one --corpus NAME=PATH (or a shipped name such as legal)"
        )
    readers = [CorpusReader([path], source=name) for name, path in corpora]  # missing corpora fail here
    inputs = [Path(base_path), *(f for reader in readers for f in reader.files)]
    check_output_dir(Path(out), overwrite=overwrite, inputs=inputs)  # before minutes of counting
    base = load_tokenizer(base_path, name="base")
    kind = _model_type(base)
    added = _learn(base, kind, corpora, num_tokens, min_frequency, quiet)
    if not added:
        raise ConfigError(
            f"no pair of base tokens occurs {min_frequency}+ times in the corpora; lower --min-frequency"
        )
    if len(added) < num_tokens:
        log.warning("only %d of %d tokens reach --min-frequency %d", len(added), num_tokens, min_frequency)
    extended = build_extended(base, added) if kind == "BPE" else build_extended_unigram(base, added)
    before, after = count_tokens(base.tokenizer, corpora), count_tokens(extended, corpora)
    with atomic_output_dir(Path(out), overwrite=overwrite, command="tokenizer extend", inputs=inputs) as tmp:
        eos_id = _save(base, extended, tmp)
        write_json(tmp / "added_tokens_map.json", _token_map(base, added, extended, pad_to_multiple_of))
        written = load_tokenizer(tmp)  # vocab size and fingerprint as every later stage computes them
        manifest = {
            "format": MANIFEST_FORMAT,
            "base": base.describe(),
            "corpora": [
                {
                    "name": r.source,
                    "files": [str(f) for f in r.files],
                    "fingerprint": corpus_fingerprint(r.files),
                }
                for r in readers
            ],  # fmt: skip
            "base_model": kind,
            "num_tokens_requested": num_tokens,
            "num_tokens_added": len(added),
            "min_frequency": min_frequency,
            "vocab_size": written.vocab_size,
            "embedding_rows": _round_up(written.vocab_size, pad_to_multiple_of or 1),
            "eos_token_id": eos_id,
            "tokens_before": before,
            "tokens_after": after,
            "token_reduction": round(1 - after / before, 6) if before else 0.0,
            "predicted_tokens_saved": sum(e["frequency"] for e in added),
            "fingerprint": written.fingerprint,
        }
        write_json(tmp / "manifest.json", manifest)
    log.info("extended %s by %d tokens: corpus %d -> %d tokens", base.path, len(added), before, after)
    return manifest
