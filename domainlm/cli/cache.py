"""`domainlm cache list|prune`: what the token cache of `mix` holds, and deleting entries from it."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from domainlm.cli.options import Json
from domainlm.config import resolve_cli_path
from domainlm.mix.cache import EntryInfo, TokenCache, default_cache_dir, parse_age
from domainlm.progress import console
from domainlm.units import human_count

app = typer.Typer(help="The token cache of `mix`: list what is cached, prune it.", no_args_is_help=True)

CacheOption = Annotated[
    str | None, typer.Option("--cache", help="Cache directory (default: $XDG_CACHE_HOME/domainlm/tokens).")
]


def _cache(path: str | None) -> TokenCache:
    return TokenCache(resolve_cli_path(path) if path is not None else default_cache_dir())


def human_bytes(num: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if num < 1024 or unit == "TiB":
            return f"{num:.0f} {unit}" if unit == "B" else f"{num:.1f} {unit}"
        num /= 1024
    return f"{num:.1f} TiB"


def _totals(entries: list[EntryInfo]) -> dict:
    return {
        "entries": len(entries),
        "documents": sum(e.documents or 0 for e in entries),
        "tokens": sum(e.tokens or 0 for e in entries),
        "disk_bytes": sum(e.disk_bytes for e in entries),
    }


def _table(title: str, entries: list[EntryInfo]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title=title)
    for name in ("key", "source file", "tokenizer", "docs", "tokens", "on disk", "last used"):
        table.add_column(name, justify="right" if name in ("docs", "tokens", "on disk") else "left")
    for e in entries:
        table.add_row(
            e.key[:12],
            e.file or f"({e.problem})",
            (e.tokenizer_fingerprint or "?")[:12],
            f"{e.documents:,}" if e.documents is not None else "?",
            human_count(e.tokens) if e.tokens is not None else "?",
            human_bytes(e.disk_bytes),
            (e.last_used or "?").replace("T", " ").replace("+00:00", "Z"),
        )
    totals = _totals(entries)
    table.caption = (
        f"{totals['entries']} entries, {totals['documents']:,} documents, "
        f"{human_count(totals['tokens'])} tokens, {human_bytes(totals['disk_bytes'])}"
    )
    return table


@app.command("list")
def list_entries(cache: CacheOption = None, as_json: Json = False) -> None:
    """Show cached files: source file, tokenizer fingerprint, documents, tokens, bytes on disk, last use."""
    token_cache = _cache(cache)
    entries = token_cache.entries()
    if as_json:
        summary = {"cache": str(token_cache.root), "entries": [e.as_dict() for e in entries]}
        print(json.dumps({**summary, "totals": _totals(entries)}, indent=2))
        return
    console.print(_table(f"token cache {token_cache.root}", entries))


@app.command("prune")
def prune(
    cache: CacheOption = None,
    older_than: Annotated[
        str | None, typer.Option(help="Delete entries not used for this long: 30d, 12h, 90m.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Delete every entry.")] = False,
    key: Annotated[
        str | None, typer.Option(help="Delete the entry with this key (or a 6+ char prefix).")
    ] = None,
    as_json: Json = False,
) -> None:
    """Delete cache entries (a later mix tokenizes those files again)."""
    token_cache = _cache(cache)
    age = parse_age(older_than) if older_than is not None else None
    removed = token_cache.prune(older_than_s=age, everything=all_, key=key)
    if as_json:
        summary = {"cache": str(token_cache.root), "removed": [e.as_dict() for e in removed]}
        print(json.dumps({**summary, "totals": _totals(removed)}, indent=2))
        return
    totals = _totals(removed)
    console.print(
        f"removed {totals['entries']} entries ({human_count(totals['tokens'])} tokens, "
        f"{human_bytes(totals['disk_bytes'])}) from {token_cache.root}"
    )


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="cache")
