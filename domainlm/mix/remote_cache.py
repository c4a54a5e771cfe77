"""A token cache in object storage (`mix --cache s3://bucket/tokens`), shared by every machine.

Entries are used from a local mirror (`$XDG_CACHE_HOME/domainlm/remote-tokens/<sha of the URL>`): the
token replay memmaps and seeks, which object storage cannot do cheaply. A key missing from the
mirror is fetched from `<url>/<key>/` (meta.json last, so a half-uploaded entry is never fetched
as whole) and then checked like any local entry (sizes + xxh3 checksums in its meta.json); an
entry written by this run is uploaded after its local commit, meta.json last. The remote root
carries domainlm's marker (command `cache`) like a local cache root, and a root holding other
files is refused.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

import numpy as np

from domainlm.errors import ConfigError
from domainlm.mix.cache import COMMAND, TokenCache, default_cache_dir
from domainlm.mix.cache_entry import META_NAME, TEMP_PREFIX, CacheEntry, EntryWriter, lock_dir
from domainlm.outputs import MARKER_NAME, remove_tree, write_marker
from domainlm.storage import check_reachable, filesystem, storage_errors
from domainlm.storage.stage import download_files, remote_sizes


class _UploadingWriter:
    """An EntryWriter whose commit also puts the entry into the remote cache."""

    def __init__(self, writer: EntryWriter, cache: RemoteTokenCache) -> None:
        self.writer, self.cache = writer, cache

    def add(self, *args) -> None:
        self.writer.add(*args)

    def abort(self) -> None:
        self.writer.abort()

    def commit(self, read_stats: dict, encoder: str | None = None) -> Path:
        final = self.writer.commit(read_stats, encoder)
        self.cache.upload(final)
        return final


class RemoteTokenCache(TokenCache):
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        mirror = (
            default_cache_dir().parent / "remote-tokens" / hashlib.sha256(self.url.encode()).hexdigest()[:16]
        )
        super().__init__(mirror)

    def prepare(self) -> None:
        """The remote root answers and is empty or a domainlm cache (marked now if new); the mirror too."""
        check_reachable(self.url)
        fs, root = filesystem(self.url)
        with storage_errors(self.url, fs):
            names = {p[len(root) + 1 :] for p in fs.find(root)}
            if names and MARKER_NAME not in names:
                raise ConfigError(
                    f"--cache {self.url}: not a domainlm token cache (no {MARKER_NAME}); choose a new "
                    "or empty prefix, or run mix with --no-cache"
                )
            if not names:
                self.root.mkdir(parents=True, exist_ok=True)
                marker_dir = Path(self.root)
                write_marker(marker_dir, COMMAND)
                fs.put_file(str(marker_dir / MARKER_NAME), f"{root}/{MARKER_NAME}")
        super().prepare()

    def open(self, key: str, inputs: dict) -> CacheEntry | None:
        if not (self.root / key).is_dir():
            self._fetch(key)
        return super().open(key, inputs)

    def writer(self, key: str, inputs: dict, source_file: Path, dtype: np.dtype) -> _UploadingWriter:
        return _UploadingWriter(super().writer(key, inputs, source_file, dtype), self)

    def _fetch(self, key: str) -> None:
        sizes = remote_sizes(f"{self.url}/{key}")
        if META_NAME not in sizes:
            return  # a miss (or an upload still under way: meta.json goes last)
        tmp = self.root / f"{TEMP_PREFIX}fetch-{key[:16]}-{secrets.token_hex(4)}"
        tmp.mkdir()
        lock = lock_dir(tmp)  # remove_stale_temps leaves a locked temp dir alone
        try:
            download_files(f"{self.url}/{key}", sizes, tmp, quiet=True, label=f"fetch {key[:12]}")
            try:
                os.rename(tmp, self.root / key)
            except OSError:  # another process fetched or built it first: keep theirs
                remove_tree(tmp)
        except BaseException:
            remove_tree(tmp)
            raise
        finally:
            os.close(lock)

    def upload(self, entry: Path) -> None:
        """Put a committed local entry into the remote cache, meta.json last."""
        fs, root = filesystem(self.url)
        names = sorted(p.name for p in entry.iterdir() if p.is_file() and p.name != META_NAME)
        with storage_errors(self.url, fs):
            for name in [*names, META_NAME]:
                fs.put_file(str(entry / name), f"{root}/{entry.name}/{name}")
