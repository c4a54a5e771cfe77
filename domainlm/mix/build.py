"""Mix config -> mix directory: validate, tokenize each source, allocate, write shards + manifest.

Everything that can be checked before tokenizing is (config, tokenizer and its EOS, every corpus
path, the output directory); the whole output is built in a temp directory that is renamed into
place only after manifest.json is written, so a killed run leaves nothing that looks complete.

The encoder (splitting check + fast encoder proof, ~1.5 CPU-s for GPT-2) is built only when the
first cache miss has documents to tokenize, so a re-mix whose every file is cached builds none.
The manifest's `tokenizer.encoder` names what wrote the ids: each cache entry records it and fresh
files record the live encoder. They agree for one tokenizer (both are proved to give its ids); if
entries from older runs say otherwise (e.g. a run whose probe documents ruled tiktoken out), the
manifest lists every name that wrote ids, sorted and joined with "+", e.g. "tiktoken+tokenizers".
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from rich.progress import Progress

from domainlm.corpus import CorpusReader
from domainlm.errors import ConfigError
from domainlm.mix import layout
from domainlm.mix.allocate import Allocation, PhaseAllocation, Schedule, Supply, allocate_phases
from domainlm.mix.cache import TokenCache, open_cache
from domainlm.mix.config import MixConfig, phase_targets, target_ratios, training_tokens
from domainlm.mix.encode import BatchEncoder, LazyEncoder, load_mix_tokenizer, splitting_is_exact
from domainlm.mix.shards import build_manifest, pack_val, write_train_shards
from domainlm.mix.sources import SourceTokens, tokenize_source
from domainlm.outputs import atomic_output_dir, remove_tree, write_json
from domainlm.progress import make_progress
from domainlm.storage import is_url, local_path_of
from domainlm.storage.output import remote_output_dir
from domainlm.tokenizer.load import LoadedTokenizer

log = logging.getLogger(__name__)

_PROBE_DOCS = 2  # documents per source used to check that splitting long documents is exact
_PROBE_CHARS = 8_192  # per document; the check encodes each twice (whole and in ~64-char pieces)


@dataclass
class MixResult:
    """What a run did; `manifest` and `out` are None for a dry run."""

    allocations: list[Allocation]
    sources: list[SourceTokens]
    tokenizer: LoadedTokenizer
    seconds: float
    out: Path | str | None = None  # a str for a URL (s3://bucket/mix)
    manifest: dict | None = None
    phases: list[PhaseAllocation] = field(default_factory=list)  # in training order (one without `phases:`)

    @property
    def text_bytes(self) -> int:
        return sum(s.text_bytes for s in self.sources)


def _readers(config: MixConfig, strict: bool) -> list[CorpusReader]:
    return [
        CorpusReader(source.paths, source=name, text_field=source.text_field, strict=strict)
        for name, source in config.sources.items()
    ]


def checked_encoder(loaded: LoadedTokenizer, readers: list[CorpusReader]) -> BatchEncoder:
    """The sources' encoder: long documents are split only when splitting is proved exact on their
    first documents, which also probe the fast (tiktoken) path. The local and the Ray build share it."""
    samples = [doc.text[:_PROBE_CHARS] for reader in readers for doc in islice(iter(reader), _PROBE_DOCS)]
    exact = splitting_is_exact(loaded.tokenizer, samples)
    if not exact:
        log.info("tokenizer %s: split documents would tokenize differently; encoding them whole", loaded.path)
    return BatchEncoder(loaded, split_long=exact, probe_texts=samples)


class _SourceBar:
    """One progress bar per source: documents done (total unknown until the end) and MB of text."""

    def __init__(self, progress: Progress, name: str) -> None:
        self.progress, self.name, self.num_bytes = progress, name, 0
        self.task = progress.add_task(f"tokenize {name}", total=None)

    def __call__(self, num_docs: int, num_bytes: int) -> None:
        self.num_bytes += num_bytes
        label = f"tokenize {self.name} ({self.num_bytes / 1e6:,.0f} MB)"
        self.progress.update(self.task, advance=num_docs, description=label)

    def finish(self) -> None:
        self.progress.update(self.task, total=self.progress.tasks[self.task].completed)


def _tokenize_all(
    config: MixConfig,
    readers: list[CorpusReader],
    encoder: LazyEncoder,
    root: Path | None,
    progress: Progress,
    cache: TokenCache | None = None,
) -> list[SourceTokens]:
    results = []
    for (name, source), reader in zip(config.sources.items(), readers, strict=True):
        fraction = config.val_fraction if source.val_fraction is None else source.val_fraction
        bar = _SourceBar(progress, name)
        results.append(tokenize_source(name, reader, encoder, fraction, config.seed, root, bar, cache=cache))
        bar.finish()
    return results


def _allocate(config: MixConfig, sources: list[SourceTokens]) -> Schedule:
    supplies = [
        Supply(name, ratio, tokens.tokens, cfg.max_repeats)
        for (name, cfg), ratio, tokens in zip(
            config.sources.items(), target_ratios(config), sources, strict=True
        )
    ]
    return allocate_phases(supplies, phase_targets(config), config.seq_len, training_tokens(config))


def _encoder_name(sources: list[SourceTokens], encoder: LazyEncoder) -> str:
    """What wrote the mix's ids (see the module docstring); when no document was encoded or cached
    (nothing to name), the encoder this run would have used."""
    names = sorted({name for source in sources for name in source.encoders})
    return "+".join(names) if names else encoder.get().encoder_name


def _tokenizer_entry(loaded: LoadedTokenizer, encoder_name: str) -> dict:
    return {
        "encoder": encoder_name,  # what wrote the ids: tiktoken or tokenizers (the same ids, proved)
        "path": str(loaded.path),
        "fingerprint": loaded.fingerprint,
        "eos_token": loaded.eos_token,
        "dtype": loaded.dtype.name,
        "vocab_size": loaded.vocab_size,
        "eos_token_id": loaded.eos_token_id,
    }


def _write_outputs(
    root: Path,
    config: MixConfig,
    loaded: LoadedTokenizer,
    schedule: Schedule,
    sources,
    progress: Progress,
    encoder_name: str,
) -> dict:
    total = sum(a.sequences for a in schedule.allocations)
    task = progress.add_task("write shards", total=total)
    shards = write_train_shards(
        root, schedule, sources, loaded.dtype, config.seed, config.shard_tokens,
        on_block=lambda n: progress.update(task, advance=n),
    )  # fmt: skip
    val_sequences = [pack_val(s, config.seq_len, loaded.dtype) for s in sources]
    remove_tree(root / layout.WORK_DIR)
    manifest = build_manifest(
        root,
        config.model_dump(mode="json"),
        _tokenizer_entry(loaded, encoder_name),
        schedule,
        sources,
        val_sequences,
        shards,
    )
    write_json(root / layout.MANIFEST_NAME, manifest)  # last: its presence marks a complete mix
    return manifest


def build_mix(
    config: MixConfig,
    dry_run: bool = False,
    overwrite: bool = False,
    strict: bool = False,
    quiet: bool = False,
    cache: Path | str | bool = True,
    executor: str = "local",
    ray_address: str | None = None,
) -> MixResult:
    """Run the mix described by `config` (a dry run tokenizes to count, and writes no mix).

    `cache`: True = the default token cache (`default_cache_dir()`), a path = that cache, False =
    none. A dry run fills the cache too, so the real run after it does not tokenize again.
    """
    started = time.perf_counter()
    if config.tokenizer is None:
        raise ConfigError(
            "no tokenizer: pass --tokenizer DIR (or tokenizer.json), or set `tokenizer:` in the YAML"
        )
    if config.out is None and not dry_run:
        raise ConfigError("no output directory: pass --out DIR, or set `out:` in the YAML")
    loaded = load_mix_tokenizer(config.tokenizer, config.eos_token)
    readers = _readers(config, strict)
    out = None if dry_run else config.out
    inputs = [loaded.path, *(f for reader in readers for f in reader.files if isinstance(f, Path))]
    with _cluster(executor, ray_address, cache) as ray:  # an unreachable cluster fails before any write
        token_cache = open_cache(cache)
        if ray is not None:  # tokenize into the cache as Ray tasks; the build below reads the entries
            from domainlm.mix.ray_encode import fill_cache_on_ray

            fill_cache_on_ray(ray, config, readers, cache, token_cache, strict, quiet)
    output = _output(out, overwrite, inputs, quiet)
    with output as root, make_progress(quiet) as progress:
        encoder = LazyEncoder(loaded, lambda: checked_encoder(loaded, readers))
        sources = _tokenize_all(config, readers, encoder, root, progress, token_cache)
        schedule = _allocate(config, sources)
        manifest = None
        if root is not None:
            name = _encoder_name(sources, encoder)
            manifest = _write_outputs(root, config, loaded, schedule, sources, progress, name)
    seconds = time.perf_counter() - started
    shown = None if out is None else out if is_url(out) else Path(out)
    return MixResult(schedule.allocations, sources, loaded, seconds, shown, manifest, schedule.phases)


def _cluster(
    executor: str, ray_address: str | None, cache: Path | str | bool
) -> contextlib.AbstractContextManager:
    """The Ray connection for --executor ray (None for local); its tasks write the token cache."""
    from domainlm.executors import check_executor

    if check_executor(executor, ray_address) == "local":
        return contextlib.nullcontext(None)
    if cache is False:
        raise ConfigError(
            "--executor ray with --no-cache: Ray tasks tokenize into the token cache; drop --no-cache"
        )
    from domainlm.executors.ray_cluster import ray_cluster

    return ray_cluster(ray_address)


def _output(
    out: str | None, overwrite: bool, inputs: list[Path], quiet: bool
) -> contextlib.AbstractContextManager[Path | None]:
    """Nothing (dry run), a local temp dir renamed into place, or for a URL (s3://bucket/mix) a local
    staging dir uploaded with manifest.json last (domainlm.storage.output): same bytes either way."""
    if out is None:
        return contextlib.nullcontext(None)
    if is_url(out) and local_path_of(out) is None:
        last = (layout.MANIFEST_NAME,)
        return remote_output_dir(out, overwrite=overwrite, command="mix", last=last, quiet=quiet)
    local = local_path_of(out) or Path(out)
    return atomic_output_dir(local, overwrite=overwrite, command="mix", inputs=inputs)
