"""`domainlm tokenizer train|extend`: corpora -> a domain tokenizer; base + corpora -> an extended one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from domainlm.cli.options import Json, Overwrite, Quiet, StorageOptions, out_option, use_storage_options
from domainlm.config import load_config_data, validate_config
from domainlm.errors import ConfigError
from domainlm.naming import split_named
from domainlm.outputs import to_json
from domainlm.progress import console

app = typer.Typer(
    help="Train a domain tokenizer, or extend a general one with domain tokens.", no_args_is_help=True
)


def _parse_ratios(items: list[str]) -> dict[str, float]:
    ratios = {}
    for item in items:
        name, value = split_named(item, "--ratio", "SHARE")
        try:
            share = float(value)
        except ValueError:
            share = None
        if name is None or share is None:
            raise ConfigError(f"--ratio {item!r}: expected NAME=SHARE, e.g. --ratio finance=0.51")
        ratios[name] = share
    return ratios


def build_train_config(
    config_file: Path | None, sets: list[str], corpora: list[str], ratios: list[str], flags: dict
):
    """defaults < YAML < --set < flags -> TrainConfig (paths in the YAML relative to its folder)."""
    from domainlm.tokenizer.config import TrainConfig
    from domainlm.tokenizer.resolve import resolve_corpus

    data = load_config_data(TrainConfig, config_file, sets)  # YAML paths: its folder; --set: the cwd
    if corpora:
        data["corpora"] = [{"name": n, "paths": [str(p)]} for n, p in map(resolve_corpus, corpora)]
    share = _parse_ratios(ratios)
    known = {c.get("name"): c for c in data.get("corpora") or [] if isinstance(c, dict)}
    for name, value in share.items():
        if name not in known:
            raise ConfigError(
                f"--ratio {name}={value}: no corpus named {name!r}; known: {', '.join(map(str, known))}"
            )
        known[name]["ratio"] = value
    specials = {k: v for k, v in flags.pop("special_tokens").items() if v is not None}
    if specials:
        data.setdefault("special_tokens", {}).update(specials)
    data.update({k: v for k, v in flags.items() if v is not None})
    if not data.get("corpora"):
        raise ConfigError("no training corpus; pass --corpus NAME=PATH (or a shipped name such as legal)")
    return validate_config(TrainConfig, data, str(config_file) if config_file else "tokenizer train")


@app.command("train")
def train(
    out: Annotated[str, out_option("Output tokenizer directory, or a URL such as s3://bucket/tokenizer.")],
    corpus: Annotated[
        list[str] | None,
        typer.Option(
            "--corpus", metavar="NAME=PATH", help="NAME=PATH (file, folder, glob) or a shipped name."
        ),
    ] = None,
    ratio: Annotated[
        list[str] | None,
        typer.Option(
            "--ratio", metavar="NAME=SHARE", help="NAME=SHARE of training bytes, e.g. finance=0.51."
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML with TrainConfig fields.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="KEY=VALUE", help="Override a config field: key.sub=value."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="bpe (byte-level BPE) or unigram (Unigram LM, 256 byte-fallback tokens)."
        ),
    ] = None,
    vocab_size: Annotated[
        int | None, typer.Option("--vocab-size", help="Vocabulary size incl. specials.")
    ] = None,
    min_frequency: Annotated[
        int | None, typer.Option("--min-frequency", help="BPE: minimum pair count.")
    ] = None,
    digits: Annotated[
        str | None,
        typer.Option(
            "--digits",
            help="Digit runs: single (one token per digit, default; best for arithmetic), group3 (up to 3 "
            "digits per token, as cl100k), whole (no split: shortest text).",
        ),
    ] = None,
    split_digits: Annotated[
        bool | None,
        typer.Option("--split-digits/--no-split-digits", help="Older spelling of --digits single / whole."),
    ] = None,
    normalization: Annotated[str | None, typer.Option("--normalization", help="none, nfc or nfkc.")] = None,
    lowercase: Annotated[
        bool | None, typer.Option("--lowercase/--no-lowercase", help="Lowercase the text.")
    ] = None,
    max_train_bytes: Annotated[
        str | None, typer.Option("--max-train-bytes", help="Cap on training text, e.g. 200M.")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for document sampling.")] = None,
    bos: Annotated[str | None, typer.Option("--bos", help="BOS token string.")] = None,
    eos: Annotated[str | None, typer.Option("--eos", help="EOS token string (always set).")] = None,
    pad: Annotated[str | None, typer.Option("--pad", help="PAD token string.")] = None,
    unk: Annotated[str | None, typer.Option("--unk", help="UNK token string.")] = None,
    mask: Annotated[str | None, typer.Option("--mask", help="Mask token for MLM, e.g. '<mask>'.")] = None,
    sentinels: Annotated[
        int | None, typer.Option("--sentinels", help="Number of T5 sentinels <extra_id_N>.")
    ] = None,
    overwrite: Overwrite = False,
    storage_option: StorageOptions = None,
    quiet: Quiet = False,
    json_out: Json = False,
) -> None:
    """Train a byte-level BPE or Unigram tokenizer on one or more corpora (optionally mixed by ratio)."""
    from domainlm.tokenizer.train import train_tokenizer

    use_storage_options(storage_option)

    flags = {
        "model": model, "vocab_size": vocab_size, "min_frequency": min_frequency,
        "digits": _digit_flags(digits, split_digits),
        "normalization": normalization, "lowercase": lowercase, "max_train_bytes": max_train_bytes, "seed": seed,
        "special_tokens": {"bos": bos, "eos": eos, "pad": pad, "unk": unk, "mask": mask, "num_sentinels": sentinels},
    }  # fmt: skip
    cfg = build_train_config(config, set_ or [], corpus or [], ratio or [], flags)
    manifest = train_tokenizer(cfg, out, overwrite=overwrite, quiet=quiet or json_out)  # out: a path or URL
    if json_out:
        print(to_json(manifest), end="")
        return
    _print_train_summary(manifest, out)


def _digit_flags(digits: str | None, split_digits: bool | None) -> str | None:
    """--split-digits / --no-split-digits are --digits single / whole; both flags must agree."""
    if split_digits is None:
        return digits
    alias = "single" if split_digits else "whole"
    if digits is not None and digits != alias:
        flag = "--split-digits" if split_digits else "--no-split-digits"
        raise ConfigError(f"{flag} (= --digits {alias}) conflicts with --digits {digits}; pass only --digits")
    return alias


def _print_train_summary(manifest: dict, out: Path | str) -> None:
    short = manifest.get("vocab_shortfall")
    size = f"vocab {manifest['vocab_size']:,}"
    if short:  # the trainer stopped early: say it in the summary line itself, not only in a log warning
        size += (
            f" of {short['requested']:,} requested ({short['share']:.1%}: {short['reason']}; {short['fix']})"
        )
    table = Table(title=f"{manifest['model']} tokenizer, {size} -> {out}")
    for column in ("corpus", "documents", "MB available", "MB used", "target ratio", "realized ratio"):
        table.add_column(column, justify="left" if column == "corpus" else "right")
    for c in manifest["corpora"]:
        target = "-" if c["target_ratio"] is None else f"{c['target_ratio']:.3f}"
        table.add_row(c["name"], f"{c['documents']:,}", f"{c['bytes'] / 1e6:.2f}", f"{c['used_bytes'] / 1e6:.2f}",
                      target, f"{c['realized_ratio']:.3f}")  # fmt: skip
    console.print(table)
    specials = ", ".join(f"{k}={v['token']}({v['id']})" for k, v in manifest["special_tokens"].items())
    console.print(f"special tokens: {specials}")


@app.command("extend")
def extend(
    base: Annotated[
        str, typer.Option("--base", metavar="PATH", help="Base BPE or Unigram tokenizer directory, or gpt2.")
    ],
    out: Annotated[Path, out_option("Output directory for the extended tokenizer.")],
    corpus: Annotated[
        list[str] | None,
        typer.Option(
            "--corpus", metavar="NAME=PATH", help="NAME=PATH of domain text, or a shipped name (legal)."
        ),
    ] = None,
    num_tokens: Annotated[int, typer.Option("--num-tokens", help="How many domain tokens to add.")] = 1000,
    min_frequency: Annotated[
        int, typer.Option("--min-frequency", help="Least pair count for a new token.")
    ] = 2,
    pad_to_multiple_of: Annotated[
        int | None,
        typer.Option(
            "--pad-to-multiple-of",
            metavar="N",
            help="Embedding rows rounded up to a multiple of N in pretraining (e.g. 128 for tensor cores); "
            "the tokenizer is unchanged. Recorded in added_tokens_map.json.",
        ),
    ] = None,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    json_out: Json = False,
) -> None:
    """Add the N domain tokens that save the most tokens on the corpora to a BPE (new merges) or
    Unigram (new scored pieces) tokenizer, writing it plus added_tokens_map.json for embedding init."""
    import json

    from domainlm.tokenizer.extend import extend_tokenizer
    from domainlm.tokenizer.resolve import resolve_corpus, resolve_tokenizer

    manifest = extend_tokenizer(
        resolve_tokenizer(base)[1], [resolve_corpus(c) for c in corpus or []], num_tokens, out,
        min_frequency=min_frequency, overwrite=overwrite, quiet=quiet or json_out,
        pad_to_multiple_of=pad_to_multiple_of,
    )  # fmt: skip
    if json_out:
        print(to_json(manifest), end="")
        return
    tokens = json.loads((out / "added_tokens_map.json").read_text(encoding="utf-8"))["tokens"]
    padded = manifest["embedding_rows"] != manifest["vocab_size"]
    rows = f", {manifest['embedding_rows']:,} embedding rows" if padded else ""
    table = Table(
        title=f"{manifest['num_tokens_added']} tokens added -> vocab {manifest['vocab_size']:,}{rows} ({out})"
    )
    for column in ("id", "token", "base pieces", "tokens saved"):
        table.add_column(column, justify="right" if column in ("id", "tokens saved") else "left")
    for entry in tokens[:15]:
        table.add_row(
            str(entry["id"]),
            repr(entry["text"]),
            " | ".join(map(repr, _texts(entry))),
            f"{entry['frequency']:,}",
        )
    console.print(table)
    console.print(
        f"domain corpus ({manifest['base_model']} base): {manifest['tokens_before']:,} -> "
        f"{manifest['tokens_after']:,} tokens "
        f"({manifest['token_reduction']:.1%} shorter)"
    )


def _texts(entry: dict) -> list[str]:
    """Readable base pieces: byte-level symbols back to text where they form whole characters,
    SentencePiece's "▁" as a space."""
    from domainlm.tokenizer.load import byte_decoder

    table = byte_decoder()
    out = []
    for piece in entry["base_pieces"]:
        if "▁" in piece:
            out.append(piece.replace("▁", " "))
            continue
        raw = bytes(table[ch] for ch in piece if ch in table) if all(ch in table for ch in piece) else None
        out.append(raw.decode("utf-8", errors="replace") if raw is not None else piece)
    return out


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="tokenizer")
