"""`mix --executor ray`: every input file that misses the token cache is tokenized into its cache
entry by a Ray task (one per file); the local build then reads the entries.

The mix itself (allocation, shuffled packing, shards, manifest) stays the local streaming code:
it already writes the same bytes whether a file came from the cache or was tokenized in place,
so the Ray run's mix is the local run's byte for byte. The cache must be one every node sees: a
shared filesystem path or an s3:// cache (domainlm.mix.remote_cache). Each task builds the same
encoder as the driver would (the same probe documents, so the same `encoder` name in the entry).
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from domainlm.corpus.readers import CorpusReader
from domainlm.executors.ray_cluster import get
from domainlm.mix.build import checked_encoder
from domainlm.mix.cache import TokenCache, cache_key, default_cache_dir, file_digests, file_stamp, open_cache
from domainlm.mix.config import MixConfig
from domainlm.mix.encode import LazyEncoder, load_mix_tokenizer
from domainlm.mix.sources import cached_file, entry_inputs
from domainlm.progress import make_progress
from domainlm.storage import set_storage_options, storage_options
from domainlm.storage.paths import as_path

RETRIES = 3  # a task whose worker dies is run again; a file that fails to read fails the run
_ENCODERS: dict[tuple, LazyEncoder] = {}  # per worker process: built once, reused by its tasks


class _CacheOnly:
    """tokenize_source's sink without a mix: this task only fills the cache entry."""

    needs_text = False

    def __init__(self) -> None:
        self.result = SimpleNamespace(encoders=[], cached_files=0)

    def add(self, *args: Any) -> None:
        return None


def _worker_encoder(tokenizer: str, eos: str | None, sources: list[dict], strict: bool) -> LazyEncoder:
    key = (tokenizer, eos, repr(sources), strict)
    if key not in _ENCODERS:
        loaded = load_mix_tokenizer(tokenizer, eos)
        readers = [
            CorpusReader(s["paths"], source=s["name"], text_field=s["text_field"], strict=strict)
            for s in sources
        ]
        _ENCODERS[key] = LazyEncoder(loaded, lambda: checked_encoder(loaded, readers))
    return _ENCODERS[key]


def tokenize_file(job: dict, tokenizer: str, eos: str | None, sources: list[dict], cache_root: str,
                  strict: bool, storage: dict) -> dict:  # fmt: skip
    """One corpus file -> its cache entry (nothing if already there); returns documents and bytes read."""
    if storage:
        set_storage_options(storage)
    encoder = _worker_encoder(tokenizer, eos, sources, strict)
    cache = open_cache(cache_root)
    reader = CorpusReader([job["path"]], source=job["source"], text_field=job["text_field"], strict=strict)
    path = as_path(reader.files[0])
    stamp = file_stamp(path)  # before hashing, as tokenize_source takes it
    digests = file_digests([path])
    inputs = entry_inputs(path, reader.text_field, encoder, digests)
    if cache.open(cache_key(inputs), inputs) is not None:
        return {"documents": 0, "bytes": 0, "cached": True}
    counts = {"documents": 0, "bytes": 0, "cached": False}

    def count(num_docs: int, num_bytes: int) -> None:
        counts["documents"] += num_docs
        counts["bytes"] += num_bytes

    cached_file(cache, reader, encoder, _CacheOnly(), count, digests, stamp)
    return counts


def fill_cache_on_ray(
    ray: Any, config: MixConfig, readers: list[CorpusReader], cache: Path | str | bool, token_cache: TokenCache,
    strict: bool, quiet: bool,
) -> None:  # fmt: skip
    """Tokenize every input file into `token_cache` as Ray tasks, one bar over them."""
    root = str(default_cache_dir()) if cache is True else str(cache)  # workers may not share our env
    sources = [
        {"name": name, "paths": [str(p) for p in reader.files], "text_field": reader.text_field}
        for name, reader in zip(config.sources, readers, strict=True)
    ]
    jobs = [
        {"source": name, "path": str(path), "text_field": reader.text_field}
        for name, reader in zip(config.sources, readers, strict=True)
        for path in reader.files
    ]
    task = ray.remote(tokenize_file).options(max_retries=RETRIES)
    args = (str(config.tokenizer), config.eos_token, sources, root, strict, storage_options())
    pending = [task.remote(job, *args) for job in jobs]
    with make_progress(quiet) as progress:
        bar = progress.add_task("tokenize on Ray (files)", total=len(pending))
        start, docs, num_bytes = time.perf_counter(), 0, 0
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for found in get(ray, done):
                docs += found["documents"]
                num_bytes += found["bytes"]
            seconds = max(time.perf_counter() - start, 1e-9)
            label = f"tokenize on Ray: {num_bytes / 1e6 / seconds:.2f} MB/s, {docs / seconds:,.0f} docs/s"
            progress.update(bar, advance=len(done), description=label)
