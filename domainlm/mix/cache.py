"""Corpus file + tokenizer -> a content-addressed token cache entry (tokenize once, mix many).

`mix` tokenizes each input file once into an entry (layout: `domainlm.mix.cache_entry`); a re-mix
at other ratios, seq_len or seed reads the entries instead of the corpus and writes the same bytes.
The key is sha256 over the cache format, the file's content sha256, the tokenizer fingerprint, the
EOS id, the dtype, the reader settings (file format from its name, text field) and the encoder's
settings: an edited file or another tokenizer is a miss, never a stale hit.

Default root: `$XDG_CACHE_HOME/domainlm/tokens` (else `~/.cache/domainlm/tokens`). The root carries
domainlm's output marker (command `cache`), so pruning deletes inside it through
`outputs.remove_tree`. Entries are built in a locked temp dir inside the root and renamed into
place, so two mixes sharing a cache at once are safe: readers see a whole entry or none, and when
two processes build the same key the second rename fails and that process drops its copy. A used
entry is first checked against the sizes and xxh3-128 checksums in its meta.json; a mismatch is a one-line
DataError naming the entry and the fix.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from domainlm.corpus.fingerprint import corpus_files
from domainlm.corpus.readers import COMPRESSION_SUFFIXES, _kind_of
from domainlm.errors import ConfigError, DataError
from domainlm.mix.cache_entry import (
    CACHE_FORMAT,
    META_NAME,
    TEMP_PREFIX,
    CacheEntry,
    EntryWriter,
    entry_problem,
    lock_dir,
)
from domainlm.outputs import MARKER_NAME, file_sha256, fingerprint_files, prepare_run_dir, remove_tree
from domainlm.storage import is_url, local_path_of
from domainlm.storage.paths import as_path

COMMAND = "cache"  # the root's marker names this command
_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
_STALE_TEMP_S = 60.0  # an unlocked temp dir older than this belongs to a killed process
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/domainlm/tokens, else ~/.cache/domainlm/tokens (a relative XDG value is ignored)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "domainlm" / "tokens"


def reader_format(path: Path) -> str:
    """What the reader makes of the file's bytes, decided by its name: 'jsonl.gz', 'text', 'dataset'."""
    if path.is_dir():
        return "dataset"
    compression = next((c for c in COMPRESSION_SUFFIXES if path.name.lower().endswith(c)), "")
    return f"{_kind_of(path)}{compression}"


def file_digests(files: list[Path]) -> dict[Path, str]:
    """sha256 of every file of a source (a `datasets` folder: each file inside), read once (~0.6 ms/MB):
    they make the cache keys and the source's corpus fingerprint."""
    return {p: file_sha256(p) for f in files for p in corpus_files(as_path(f))}


def file_stamp(path: Path) -> tuple:
    """(size, mtime) of a file, of every file in a `datasets` folder: to notice an edit during a read."""
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in corpus_files(as_path(path)))


def content_sha256(path: Path, digests: dict[Path, str] | None = None) -> str:
    """sha256 of a file's bytes; for a `datasets` directory, over its files' names and bytes."""
    if path.is_dir():
        return fingerprint_files(corpus_files(path), digests)
    return (digests or {}).get(path) or file_sha256(path)


def cache_key(inputs: dict) -> str:
    """The entry's name: sha256 of the key inputs and CACHE_FORMAT as canonical JSON."""
    text = json.dumps({"format": CACHE_FORMAT, **inputs}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _marker_command(directory: Path) -> str | None:
    try:
        data = json.loads((directory / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("command") if isinstance(data, dict) else None


def parse_age(text: str) -> float:
    """'30d', '12h', '90m', '45s', '2w' -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text or "")
    if not match:
        raise ConfigError(f"--older-than {text!r}: expected a number and a unit s/m/h/d/w, e.g. 30d or 12h")
    return float(match.group(1)) * _AGE_UNITS[match.group(2)]


@dataclass(frozen=True)
class EntryInfo:
    """One entry as `domainlm cache list` shows it; `problem` is set when its meta.json is unreadable."""

    key: str
    file: str | None
    tokenizer_fingerprint: str | None
    documents: int | None
    tokens: int | None
    disk_bytes: int
    created: str | None
    last_used: str | None
    last_used_ts: float  # seconds since the epoch (the directory's mtime when meta.json is unreadable)
    problem: str | None = None

    def as_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k != "last_used_ts"}
        return data


def _info(directory: Path) -> EntryInfo:
    disk = sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
    mtime = directory.stat().st_mtime
    try:
        meta = json.loads((directory / META_NAME).read_text(encoding="utf-8"))
        last_used = meta["last_used"]
        stamp = datetime.datetime.fromisoformat(last_used).timestamp()
        inputs = meta["inputs"]
        return EntryInfo(directory.name, meta["file"], inputs["tokenizer_fingerprint"], meta["documents"],
                         meta["tokens"], disk, meta["created"], last_used, stamp)  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return EntryInfo(
            directory.name, None, None, None, None, disk, None, None, mtime, "unreadable meta.json"
        )


class TokenCache:
    """A cache root: entries named by key, temp dirs beside them, domainlm's marker on the root."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.abspath(root))

    def check(self) -> None:
        """The root is new, empty, or marked by `domainlm cache`: never someone else's folder."""
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"--cache {self.root}: is a file, not a directory; choose a directory path")
        holds_files = self.root.is_dir() and next(self.root.iterdir(), None) is not None
        if holds_files and _marker_command(self.root) != COMMAND:
            raise ConfigError(
                f"--cache {self.root}: not a domainlm token cache (no {MARKER_NAME} written by "
                "`domainlm cache`); choose a new or empty directory, or run mix with --no-cache"
            )

    def prepare(self) -> None:
        """Check, then create and mark the root: done before any tokenizing."""
        self.check()
        prepare_run_dir(self.root, command=COMMAND, overwrite=False, flag="--cache")

    def corrupt(self, key: str, what: str) -> DataError:
        return DataError(
            f"token cache entry {self.root / key} is corrupt ({what}); delete it with "
            f"`domainlm cache prune --cache {self.root} --key {key}` or run mix with --no-cache"
        )

    def open(self, key: str, inputs: dict) -> CacheEntry | None:
        """The verified entry for `key`, or None (a miss); DataError when it exists but is damaged."""
        directory = self.root / key
        if not directory.is_dir():
            return None
        try:
            meta = json.loads((directory / META_NAME).read_text(encoding="utf-8"))
            problem = entry_problem(directory, meta, inputs)
        except FileNotFoundError as exc:
            if not directory.exists():
                return None  # pruned while we looked: a miss
            problem = f"{Path(exc.filename or META_NAME).name} is missing"
        except json.JSONDecodeError as exc:
            problem = f"meta.json is not valid JSON: {exc.msg} at line {exc.lineno}"
        except (OSError, ValueError, TypeError) as exc:
            problem = f"unreadable: {' '.join(str(exc).split())}"
        if problem:
            raise self.corrupt(key, problem)
        return CacheEntry(directory, meta)

    def writer(self, key: str, inputs: dict, source_file: Path, dtype: np.dtype) -> EntryWriter:
        return EntryWriter(self.root, key, inputs, source_file, dtype)

    def entries(self) -> list[EntryInfo]:
        """Every entry, oldest use first; a missing root has none."""
        if not self.root.is_dir():
            return []
        self.check()
        found = [_info(p) for p in self.root.iterdir() if _KEY_RE.match(p.name) and p.is_dir()]
        return sorted(found, key=lambda e: (e.last_used_ts, e.key))

    def find(self, key: str) -> EntryInfo:
        """The entry whose key is `key` or starts with it (a unique prefix of 6+ characters)."""
        matches = [e for e in self.entries() if len(key) >= 6 and e.key.startswith(key.lower())]
        if len(matches) != 1:
            found = "no entry" if not matches else f"{len(matches)} entries"
            raise ConfigError(
                f"--key {key}: {found} in {self.root} match(es) it; `domainlm cache list --cache "
                f"{self.root}` shows the keys (give 6 or more characters of one)"
            )
        return matches[0]

    def remove(self, key: str) -> None:
        """Rename the entry out of the way (readers see all of it or none), then delete it."""
        trash = self.root / f"{TEMP_PREFIX}trash-{key[:16]}-{secrets.token_hex(4)}"
        try:
            os.rename(self.root / key, trash)
        except FileNotFoundError:
            return
        remove_tree(trash)

    def remove_stale_temps(self) -> int:
        """Temp dirs that no live process holds (a killed mix or prune left them); how many went."""
        removed = 0
        for tmp in sorted(self.root.glob(f"{TEMP_PREFIX}*")) if self.root.is_dir() else []:
            try:
                fd = lock_dir(tmp)
            except (BlockingIOError, FileNotFoundError, NotADirectoryError):
                continue  # being built, or already gone
            try:
                if tmp.stat().st_mtime < time.time() - _STALE_TEMP_S:
                    remove_tree(tmp)
                    removed += 1
            finally:
                os.close(fd)
        return removed

    def prune(
        self, *, older_than_s: float | None = None, everything: bool = False, key: str | None = None
    ) -> list[EntryInfo]:
        """Delete the entries chosen by exactly one of the selectors; return them."""
        chosen = [x for x in (older_than_s is not None, everything, key is not None) if x]
        if len(chosen) != 1:
            raise ConfigError(
                "cache prune: pass exactly one of --older-than AGE (e.g. 30d), --all or --key KEY"
            )
        if key is not None:
            victims = [self.find(key)]
        elif everything:
            victims = self.entries()
        else:
            cutoff = time.time() - older_than_s
            victims = [e for e in self.entries() if e.last_used_ts < cutoff]
        for entry in victims:
            self.remove(entry.key)
        self.remove_stale_temps()
        return victims


def open_cache(cache: Path | str | bool) -> TokenCache | None:
    """True: the default cache; a path: that one; False: none. The root is checked and created now,
    before any tokenizing."""
    if cache is False:
        return None
    if is_url(cache) and local_path_of(cache) is None:  # s3://bucket/tokens: through a local mirror
        from domainlm.mix.remote_cache import RemoteTokenCache

        token_cache = RemoteTokenCache(cache)
        token_cache.prepare()
        return token_cache
    if is_url(cache):
        cache = local_path_of(cache)
    token_cache = TokenCache(default_cache_dir() if cache is True else Path(cache).expanduser())
    token_cache.prepare()
    return token_cache
