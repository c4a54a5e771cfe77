"""`NAME=VALUE` command-line values (`--corpus legal=data/legal`, `--model trained=runs/x/export`,
`--ratio finance=0.51`, curate's `CORPUS` arguments): split one way everywhere, and a name for a
value given without one. Below every stage: curate, the tokenizer commands and eval all use it.
"""

from __future__ import annotations

import re
from pathlib import Path

from domainlm.errors import ConfigError

# A name can become a file name (curate writes <name>.jsonl.gz): letters, digits, '_', '.', '-'.
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def split_named(text: str, flag: str, value: str = "PATH") -> tuple[str | None, str]:
    """'legal=data/x' -> ('legal', 'data/x'); 'data/x' -> (None, 'data/x').

    An existing path is never split, nor is text whose part before '=' cannot be a name
    ('runs/a=b/x'): both are a value that happens to hold '='. An empty name or value is a
    ConfigError naming `flag` and the expected form NAME=`value`.
    """
    name, sep, rest = text.partition("=")
    if not sep or Path(text).exists():
        return None, text
    name, rest = name.strip(), rest.strip()
    if not name or not rest:
        raise ConfigError(
            f"{flag} {text!r}: expected NAME={value} or {value}, e.g. {flag} legal={rest or '...'}"
        )
    if not _NAME.fullmatch(name):
        return None, text
    return name, rest


def name_from_path(path: str | Path) -> str:
    """The name of an unnamed file or folder value: 'data/legal.jsonl.gz' -> 'legal', 'out/tok/' -> 'tok'."""
    return Path(str(path).rstrip("/")).name.split(".")[0] or str(path)
