"""The flags many commands share, declared once so each spells and documents them the same way.

`-q/--quiet`, `--json`, `-o/--out` and `--overwrite` wherever a command has progress, a result, an
output directory; `--debug` (full tracebacks) is global, on the root command.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
Json = Annotated[bool, typer.Option("--json", help="Print only the result as JSON on stdout.")]
Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="Replace --out if an earlier domainlm command wrote it.")
]


def out_option(help: str) -> Any:
    """`-o/--out DIR` with this command's description of what goes there."""
    return typer.Option("--out", "-o", help=help)


StorageOptions = Annotated[
    list[str] | None,
    typer.Option(
        "--storage-option",
        help="fsspec option for s3:// / gs:// URLs (repeatable), e.g. endpoint_url=http://host:9000, "
        "key=..., secret=..., anon=true; credentials otherwise come from the environment / AWS profile.",
    ),
]


def use_storage_options(items: list[str] | None) -> None:
    """Apply --storage-option pairs to every URL this command opens (domainlm.storage)."""
    from domainlm.storage import parse_storage_options, set_storage_options

    set_storage_options(parse_storage_options(items))
