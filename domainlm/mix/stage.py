"""A mix in object storage (s3://bucket/mix) -> a checked local copy that pretrain memmaps.

Training reads random sequences from every shard, so a mix must be on local disk. The copy goes to
`$XDG_CACHE_HOME/domainlm/mixes/<fingerprint[:16]>` (named by the manifest's content fingerprint,
so a resumed run or a second recipe on the same mix copies nothing) through
domainlm.outputs.atomic_output_dir: a copy cut short is never taken for a complete one. Every file
is checked before the copy is used: each shard and its source ids against the manifest's sha256,
and the validation files through the manifest fingerprint (which hashes them), ~0.6 ms per MB.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from domainlm.errors import DataError
from domainlm.mix.layout import MANIFEST_NAME
from domainlm.mix.manifest import is_mix_dir, open_mix
from domainlm.mix.shards import output_fingerprint
from domainlm.outputs import MARKER_NAME, atomic_output_dir, file_sha256, has_marker
from domainlm.progress import make_progress
from domainlm.storage import check_reachable
from domainlm.storage.paths import RemotePath
from domainlm.storage.stage import download_files, remote_sizes

COMMAND = "mix stage"  # the marker of a staged copy


def default_stage_root() -> Path:
    """$XDG_CACHE_HOME/domainlm/mixes (else ~/.cache/domainlm/mixes), beside the token cache."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "domainlm" / "mixes"


def _remote_manifest(url: str) -> dict:
    try:
        data = json.loads((RemotePath(url) / MANIFEST_NAME).read_bytes())
    except FileNotFoundError:
        raise DataError(
            f"{url}: no {MANIFEST_NAME}; not a mix (point data.mix at a `domainlm mix` output, "
            "e.g. one written with --out s3://bucket/mix)"
        ) from None
    except ValueError as exc:
        raise DataError(f"{url}/{MANIFEST_NAME}: unreadable manifest ({exc}); rebuild the mix") from None
    if not isinstance(data, dict) or not isinstance(data.get("fingerprint"), str):
        raise DataError(f"{url}/{MANIFEST_NAME}: no fingerprint; not a domainlm mix, rebuild it")
    return data


def _checks(manifest: dict) -> list[tuple[str, str]]:
    """(relative path, sha256 the manifest records) for every shard and its source ids."""
    pairs = []
    for shard in manifest["train"]["shards"]:
        pairs.append((shard["path"], shard["sha256"]))
        if shard.get("source_ids_path"):
            pairs.append((shard["source_ids_path"], shard["source_ids_sha256"]))
    return pairs


def verify_mix_files(root: Path, manifest: dict, url: str, quiet: bool = True) -> None:
    """Every file of the copy in `root` against the manifest; a DataError naming the first mismatch."""
    pairs = _checks(manifest)
    with make_progress(quiet) as progress:
        task = progress.add_task("check sha256", total=len(pairs) + 1)
        for relative, want in pairs:
            got = file_sha256(root / relative)
            if got != want:
                raise DataError(
                    f"{url}/{relative}: sha256 {got[:16]}... is not the manifest's {want[:16]}...; the "
                    "mix in the store was changed or damaged: rebuild it with `domainlm mix --out URL`"
                )
            progress.advance(task)
        if output_fingerprint(manifest, root) != manifest["fingerprint"]:
            raise DataError(
                f"{url}: its validation files do not match the manifest fingerprint; the mix in the "
                "store was changed or damaged: rebuild it with `domainlm mix --out URL`"
            )
        progress.advance(task)


def stage_mix(url: str, *, root: Path | None = None, quiet: bool = False) -> Path:
    """The local, checked copy of the mix at `url` (made now unless an earlier run made it)."""
    check_reachable(url)
    manifest = _remote_manifest(url)
    local = (root or default_stage_root()) / manifest["fingerprint"][:16]
    if has_marker(local) and is_mix_dir(local) and open_mix(local).fingerprint == manifest["fingerprint"]:
        return local  # checked when it was staged; atomic_output_dir made it whole or not at all
    sizes = {name: size for name, size in remote_sizes(url).items() if name != MARKER_NAME}
    with atomic_output_dir(local, overwrite=True, command=COMMAND) as tmp:
        download_files(url, sizes, tmp, quiet=quiet, label=f"stage mix {url}")
        verify_mix_files(tmp, manifest, url, quiet=quiet)
    return local
