"""`domainlm mix CONFIG`: a mix YAML + tokenizer -> packed token shards, or (--dry-run) the allocation table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from domainlm.cli.executor_options import Executor, RayAddress
from domainlm.cli.options import Json, Overwrite, Quiet, StorageOptions, out_option, use_storage_options
from domainlm.config import resolve_cli_path
from domainlm.errors import ConfigError
from domainlm.mix.build import MixResult, build_mix
from domainlm.mix.cache import default_cache_dir
from domainlm.mix.config import apply_flags, load_mix_config
from domainlm.progress import console, err_console
from domainlm.units import human_count

_SKIP_KINDS = ("malformed_lines", "non_utf8", "empty_files", "empty_documents")  # ReadStats counters


def allocation_table(result: MixResult, dry_run: bool) -> Table:
    """Per source: documents, tokens available, target ratio, tokens taken, repeats (+ realized ratio)."""
    table = Table(box=box.SIMPLE_HEAD, title="mix allocation" + (" (dry run)" if dry_run else ""))
    headers = ["source", "docs", "available", "target", "taken", "repeats"]
    headers += ["val docs"] if dry_run else ["realized", "val docs/seqs"]
    for name in headers:
        table.add_column(name, justify="left" if name == "source" else "right")
    for alloc, source in zip(result.allocations, result.sources, strict=True):
        row = [
            alloc.name,
            f"{source.documents:,}",
            human_count(alloc.available_tokens),
            f"{alloc.target_ratio:.4f}",
            human_count(alloc.tokens_taken),
            f"{alloc.repeats:.2f}",
        ]
        if dry_run:
            row.append(f"{source.val_documents:,}")
        else:
            val = next(s["val"] for s in result.manifest["sources"] if s["name"] == alloc.name)
            row += [f"{alloc.realized_ratio:.4f}", f"{val['documents']:,}/{val['sequences']:,}"]
        table.add_row(*row)
    first = result.allocations[0]
    rate = result.text_bytes / 1e6 / max(result.seconds, 1e-9)
    table.caption = (
        f"{human_count(first.total_sequences * first.seq_len)} tokens = {first.total_sequences:,} x "
        f"{first.seq_len}; {result.text_bytes / 1e6:.1f} MB text in {result.seconds:.1f}s ({rate:.1f} MB/s)"
    )
    return table


def phase_table(result: MixResult) -> Table:
    """Per phase of a schedule: its sequence range, tokens, and each source's target -> realized ratio."""
    table = Table(box=box.SIMPLE_HEAD, title="mix phases")
    for name in ["phase", "sequences", "tokens", *(a.name for a in result.allocations)]:
        table.add_column(name, justify="left" if name == "phase" else "right")
    for phase in result.phases:
        ratios = [
            f"{target:.2f} -> {realized:.4f}" if target else "-"
            for target, realized in zip(phase.target_ratios, phase.realized_ratios, strict=True)
        ]
        table.add_row(phase.name, f"[{phase.start:,}, {phase.stop:,})", human_count(phase.tokens), *ratios)
    return table


def _phase_summary(result: MixResult) -> list[dict]:
    names = [a.name for a in result.allocations]
    return [
        {
            "name": p.name,
            "start": p.start,
            "stop": p.stop,
            "num_tokens": p.tokens,
            "sources": {
                name: {"target_ratio": target, "sequences": count, "realized_ratio": round(realized, 9)}
                for name, target, count, realized in zip(
                    names, p.target_ratios, p.counts, p.realized_ratios, strict=True
                )
            },
        }
        for p in result.phases
    ]


def summary(result: MixResult) -> dict:
    """The --json document: where the mix is, its fingerprint, and the allocation per source."""
    return {
        "out": str(result.out) if result.out else None,
        "dry_run": result.manifest is None,
        "fingerprint": result.manifest["fingerprint"] if result.manifest else None,
        "seq_len": result.allocations[0].seq_len,
        "num_sequences": result.allocations[0].total_sequences,
        "num_tokens": sum(a.tokens_taken for a in result.allocations),
        "tokenizer": {"path": str(result.tokenizer.path), "fingerprint": result.tokenizer.fingerprint},
        "text_bytes": result.text_bytes,
        "seconds": round(result.seconds, 3),
        "sources": [
            {
                "name": a.name,
                "documents": s.documents,
                "available_tokens": a.available_tokens,
                "target_ratio": a.target_ratio,
                "tokens_taken": a.tokens_taken,
                "repeats": round(a.repeats, 6),
                "realized_ratio": round(a.realized_ratio, 9),
                "val_documents": s.val_documents,
                "skipped": {k: s.read[k] for k in _SKIP_KINDS if s.read.get(k)},
            }
            for a, s in zip(result.allocations, result.sources, strict=True)
        ],
        "phases": _phase_summary(result),
    }


def _warn_skipped(name: str, read: dict) -> None:
    """One stderr line per source whose reader skipped input (counts, then the first problem)."""
    counts = [f"{read[k]} {k.replace('_', ' ')}" for k in _SKIP_KINDS if read.get(k)]
    if counts:
        first = read["problems"][0] if read.get("problems") else ""
        err_console.print(
            f"warning: {name}: skipped {', '.join(counts)} (--strict makes this an error); {first}"
        )


def _cache_line(result: MixResult, token_cache: Path | bool) -> None:
    """How much came from the token cache (a re-mix should say 'all')."""
    if token_cache is False:
        return
    files = sum(len(s.files) for s in result.sources)
    cached = sum(s.cached_files for s in result.sources)
    where = default_cache_dir() if token_cache is True else token_cache
    line = f"token cache {where}: {cached} of {files} input files read from it, {files - cached} tokenized"
    err_console.print(line, soft_wrap=True, markup=False, highlight=False)


def mix(
    config: Annotated[str, typer.Argument(help="Mix YAML (e.g. data_mixes/finance_51_49.yaml).")],
    tokenizer: Annotated[
        str | None,
        typer.Option(help="HF tokenizer directory, tokenizer.json, or gpt2 / bert-base-uncased (shipped)."),
    ] = None,
    out: Annotated[str | None, out_option("Output mix directory, or a URL such as s3://bucket/mix.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for the held-out split and the shuffle.")] = None,
    total_tokens: Annotated[str | None, typer.Option(help="Training tokens (50M, 1.5B) or 'all'.")] = None,
    seq_len: Annotated[int | None, typer.Option(help="Tokens per packed sequence.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a YAML key: a.b=value.")] = None,
    dry_run: Annotated[
        bool,
        typer.Option(help="Tokenize to count, print the allocation, write no mix (fills the token cache)."),
    ] = False,
    strict: Annotated[
        bool, typer.Option(help="Malformed/undecodable input is an error, not skipped.")
    ] = False,
    overwrite: Overwrite = False,
    cache: Annotated[
        str | None,
        typer.Option(help="Token cache directory (default: $XDG_CACHE_HOME/domainlm/tokens)."),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Tokenize every file, read and write no token cache.")
    ] = False,
    executor: Executor = "local",
    ray_address: RayAddress = None,
    storage_option: StorageOptions = None,
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Mix corpora by token ratio into packed, shuffled token shards with a manifest."""
    use_storage_options(storage_option)
    loaded = load_mix_config(config, set_ or [])
    resolved = apply_flags(
        loaded, config, tokenizer=tokenizer, out=out, seed=seed, total_tokens=total_tokens, seq_len=seq_len
    )
    if cache is not None and no_cache:
        raise ConfigError(f"--cache {cache} and --no-cache: pass one of them, not both")
    token_cache = False if no_cache else (resolve_cli_path(cache) if cache is not None else True)
    result = build_mix(
        resolved,
        dry_run=dry_run,
        overwrite=overwrite,
        strict=strict,
        quiet=quiet or as_json,
        cache=token_cache,
        executor=executor,
        ray_address=ray_address,
    )
    if as_json:
        print(json.dumps(summary(result), indent=2))
        return
    console.print(allocation_table(result, dry_run))
    if len(result.phases) > 1:
        console.print(phase_table(result))
    for source in result.sources:
        _warn_skipped(source.name, source.read)
    _cache_line(result, token_cache)
    if result.out is not None:
        console.print(f"wrote {result.out} (fingerprint {result.manifest['fingerprint'][:16]})")


def register(app: typer.Typer) -> None:
    app.command("mix")(mix)
