"""Corpora + TrainConfig -> a tokenizer directory (tokenizer.json, tokenizer_config.json, manifest.json).

The training itself is a library's: `tokenizers`' BpeTrainer for byte-level BPE, SentencePiece for
Unigram (see unigram.py). This module builds the BPE pipeline (normalizer, digit splitting,
byte-level pre-tokenizer and decoder), feeds the trainer the sampled corpus stream and writes a
directory that
`transformers.AutoTokenizer.from_pretrained` loads as a fast tokenizer with its special tokens set.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from domainlm.errors import DataError
from domainlm.outputs import atomic_output_dir, write_json
from domainlm.progress import make_progress
from domainlm.storage import output_target
from domainlm.storage.output import remote_output_dir
from domainlm.tokenizer.config import TrainConfig
from domainlm.tokenizer.load import load_tokenizer
from domainlm.tokenizer.sampling import CorpusPlan, iter_training_texts, open_corpora, plan_sampling
from domainlm.tokenizer.unigram import train_unigram

log = logging.getLogger(__name__)

MANIFEST_FORMAT = "domainlm.tokenizer/v1"
SENTENCEPIECE_FILE = "sentencepiece.model"  # unigram only: the SentencePiece model tokenizer.json mirrors
GROUP3_DIGITS = r"\p{N}{1,3}"  # digits="group3": runs cut left to right into pieces of up to 3 (fast_bpe.py)


def build_pipeline(config: TrainConfig) -> Tokenizer:
    """An untrained byte-level BPE tokenizer with the normalizer and pre-tokenizer `config` asks for."""
    tokenizer = Tokenizer(models.BPE())
    steps = []
    if config.normalization != "none":
        steps.append(normalizers.NFC() if config.normalization == "nfc" else normalizers.NFKC())
    if config.lowercase:
        steps.append(normalizers.Lowercase())
    if steps:
        tokenizer.normalizer = normalizers.Sequence(steps)
    # Digits first (config.digits), then GPT-2's regex split and the byte -> printable-character map:
    # every byte sequence is representable, so nothing is unknown and decode(encode(text)) == text.
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    digit_step = {
        "single": pre_tokenizers.Digits(individual_digits=True),
        "group3": pre_tokenizers.Split(Regex(GROUP3_DIGITS), behavior="isolated"),  # cl100k's \p{N}{1,3}
    }.get(config.digits)
    tokenizer.pre_tokenizer = (
        pre_tokenizers.Sequence([digit_step, byte_level]) if digit_step is not None else byte_level
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return tokenizer


def build_trainer(config: TrainConfig) -> trainers.Trainer:
    """The library's BPE trainer with the vocabulary size, specials and byte alphabet from `config`."""
    return trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=config.special_tokens.ordered(),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )


def train_library_tokenizer(
    config: TrainConfig, plans: list[CorpusPlan], quiet: bool = True, folder: Path | None = None
) -> Tokenizer:
    """Stream the planned texts into the library trainer; returns the trained `tokenizers.Tokenizer`."""
    sampled = all(p.target_bytes is not None for p in plans)
    total = sum(sum(p.copies) + (p.cut_index >= 0) for p in plans) if sampled else None
    with make_progress(quiet) as progress:
        task = progress.add_task("training tokenizer (documents)", total=total)
        texts = iter_training_texts(
            plans, on_text=None if progress.disable else lambda: progress.advance(task)
        )
        if config.model == "unigram":
            spm_path = folder / SENTENCEPIECE_FILE if folder is not None else None
            tokenizer = train_unigram(config, _require_text(texts, plans), spm_path)
        else:
            tokenizer = build_pipeline(config)
            tokenizer.train_from_iterator(texts, build_trainer(config))
    if sum(p.used_bytes for p in plans) == 0:
        names = ", ".join(p.spec.name for p in plans)
        raise DataError(f"corpora {names}: no documents with text; check the paths and text_field")
    check_vocab_reached(config, plans, tokenizer.get_vocab_size())
    return tokenizer


# A trainer that stops below this share of the requested size says the corpus is far too small
# for it: an error. Just below the size (a few pieces short) is a warning.
_MIN_REACHED_SHARE = 0.9


def vocab_shortfall(config: TrainConfig, plans: list[CorpusPlan], got: int) -> dict | None:
    """None when the trainer reached --vocab-size; else what it reached, why, and what to change."""
    wanted = config.vocab_size
    if got >= wanted:
        return None
    names = ", ".join(p.spec.name for p in plans)
    used = sum(p.used_bytes for p in plans)
    return {
        "requested": wanted,
        "reached": got,
        "share": round(got / wanted, 4),
        "reason": f"the {config.model} trainer found only {got} tokens in the corpora {names} "
        f"({used:,} bytes of text, too few distinct words)",
        "fix": f"lower --vocab-size to {got} or less, or train on more text",
    }


def check_vocab_reached(config: TrainConfig, plans: list[CorpusPlan], got: int) -> None:
    """The trainers stop early when the text has no more pairs/pieces to add; say so with the numbers."""
    short = vocab_shortfall(config, plans, got)
    if short is None:
        return
    what = f"--vocab-size {config.vocab_size}: {short['reason']}"
    if got < _MIN_REACHED_SHARE * config.vocab_size:
        raise DataError(f"{what}; {short['fix']}")
    log.warning("%s; %s (the manifest records the real size)", what, short["fix"])


def _require_text(texts: Iterator[str], plans: list[CorpusPlan]) -> Iterator[str]:
    """Fail with the corpora's names (not SentencePiece's "no sentences") when there is no text."""
    first = next(texts, None)
    if first is None:
        names = ", ".join(p.spec.name for p in plans)
        raise DataError(f"corpora {names}: no documents with text; check the paths and text_field")
    yield first
    yield from texts


def save_hf_tokenizer(tokenizer: Tokenizer, config: TrainConfig, out: Path) -> None:
    """Write tokenizer.json + tokenizer_config.json the way transformers expects them."""
    from transformers import PreTrainedTokenizerFast

    specials = config.special_tokens
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_max_length=config.model_max_length,
        extra_special_tokens=specials.sentinels(),
        **specials.named(),
    )
    fast.save_pretrained(str(out))


def train_tokenizer(
    config: TrainConfig, out: Path | str, overwrite: bool = False, quiet: bool = True
) -> dict:
    """Train, save and describe a tokenizer; returns the manifest (also written to OUT/manifest.json).

    manifest.json is deterministic (same inputs -> same bytes); the wall-clock time and throughput
    go to OUT/run.json, which is not.
    """
    out = output_target(out)
    plans = open_corpora(config)  # missing corpora fail here, before anything is written
    inputs = [f for plan in plans for f in plan.reader.files if isinstance(f, Path)]
    with _output(out, overwrite, inputs, quiet) as tmp:
        start = time.perf_counter()
        plan_sampling(plans, config)
        tokenizer = train_library_tokenizer(config, plans, quiet=quiet, folder=tmp)
        seconds = time.perf_counter() - start
        save_hf_tokenizer(tokenizer, config, tmp)
        manifest = build_manifest(config, plans, tmp, tokenizer)
        write_json(tmp / "manifest.json", manifest)
        used_bytes = sum(p.used_bytes for p in plans)
        write_json(
            tmp / "run.json",
            {
                "train_seconds": round(seconds, 3),
                "train_bytes": used_bytes,
                "mb_per_second": round(used_bytes / 1e6 / max(seconds, 1e-9), 3),
            },
        )
    log.info(
        "tokenizer: %d tokens%s from %.1f MB in %.1fs -> %s",
        manifest["vocab_size"],
        f" of {config.vocab_size} requested" if manifest["vocab_shortfall"] else "",
        used_bytes / 1e6,
        seconds,
        out,
    )
    return manifest


def _output(
    out: Path | str, overwrite: bool, inputs: list[Path], quiet: bool
) -> contextlib.AbstractContextManager[Path]:
    """A local temp dir renamed into place, or for a URL (s3://bucket/tok) a local staging dir
    uploaded with manifest.json last (domainlm.storage.output)."""
    command = "tokenizer train"
    if isinstance(out, str):
        return remote_output_dir(
            out, overwrite=overwrite, command=command, last=("manifest.json",), quiet=quiet
        )
    return atomic_output_dir(out, overwrite=overwrite, command=command, inputs=inputs)


def build_manifest(config: TrainConfig, plans: list[CorpusPlan], folder: Path, tokenizer: Tokenizer) -> dict:
    """Inputs, resolved settings, special token ids, and the written tokenizer's vocab size and fingerprint."""
    written = load_tokenizer(folder, eos_token=config.special_tokens.eos)  # as every later stage loads it
    specials = {
        name: {"token": tok, "id": tokenizer.token_to_id(tok)}
        for name, tok in config.special_tokens.named().items()
    }
    used = sum(p.used_bytes for p in plans) or 1
    corpora = []
    for plan in plans:
        entry = plan.summary()
        entry["realized_ratio"] = round(plan.used_bytes / used, 6)
        corpora.append(entry)
    return {
        "format": MANIFEST_FORMAT,
        "model": config.model,
        "vocab_size": written.vocab_size,
        "requested_vocab_size": config.vocab_size,
        # None, or {requested, reached, share, reason, fix}: the summary line repeats it
        "vocab_shortfall": vocab_shortfall(config, plans, tokenizer.get_vocab_size()),
        "special_tokens": specials,
        "sentinels": config.special_tokens.sentinels(),
        "eos_token_id": tokenizer.token_to_id(config.special_tokens.eos),
        "config": config.model_dump(mode="json"),
        "corpora": corpora,
        "train_bytes": sum(p.used_bytes for p in plans),
        "fingerprint": written.fingerprint,
        "run_info": "run.json",
    }
