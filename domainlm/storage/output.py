"""A remote output directory (s3://bucket/out) written so that a killed run leaves nothing that looks complete.

Object stores have no rename, so domainlm.outputs' temp dir + rename becomes:
1. check the target before any work: empty or absent, or (--overwrite) carrying domainlm's marker
   (`--overwrite` on a prefix without it is refused, exactly as for a local directory);
2. build the output in a local staging directory (marked, under $TMPDIR: it needs the output's
   size in local disk) with the stage's usual local code, so the bytes are those of a local run;
3. upload it to `<out>.tmp-<id>/`: the marker first (a stale temp prefix is ours to clean), the
   manifest last. This is the long step; a run killed here leaves only a marked temp prefix, which
   the next run to the same target deletes;
4. commit: delete the old output (its manifest first, its marker last), then copy the temp prefix
   into place server-side with the marker first and the manifest (`last`) last, then delete the
   temp prefix. A run killed during the commit leaves a marked target without a manifest: not a
   complete output (open_mix and friends refuse it) and replaceable with --overwrite.
There is no lock across machines (S3 has none): two runs writing one target at once is the user's
to avoid, as with two `aws s3 sync` runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from domainlm.errors import ConfigError
from domainlm.outputs import MARKER_NAME, remove_tree, write_marker
from domainlm.progress import make_progress
from domainlm.storage import BUCKET_PROTOCOLS, check_reachable, filesystem, protocol_of, storage_errors


def _marker(fs: Any, root: str) -> dict | None:
    try:
        data = json.loads(fs.cat_file(f"{root}/{MARKER_NAME}"))
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("command"), str) else None


def _files(fs: Any, root: str) -> list[str]:
    """Every object under `root/` (not `root` itself, nor `root.tmp-*` beside it)."""
    return sorted(p for p in fs.find(root) if p.startswith(f"{root}/"))


def check_remote_output(url: str, *, overwrite: bool, flag: str = "--out") -> None:
    """check_output_dir for a URL: the store answers, the bucket exists, and the target is free
    (absent or empty) or, with --overwrite, a domainlm output. Writes nothing."""
    check_reachable(url)
    fs, root = filesystem(url)
    root = root.rstrip("/")
    if protocol_of(url) in BUCKET_PROTOCOLS and "/" not in root.strip("/"):
        raise ConfigError(
            f"{flag} {url}: is a bucket root; write into a folder of it, e.g. {url.rstrip('/')}/out"
        )
    with storage_errors(url, fs):
        if fs.isfile(root):
            raise ConfigError(f"{flag} {url}: is a file, not a folder; choose a folder URL")
        if not _files(fs, root):
            return
        if not overwrite:
            raise ConfigError(f"{url}: output already exists; choose another {flag} or pass --overwrite")
        if _marker(fs, root) is None:
            raise ConfigError(
                f"{flag} {url}: not written by domainlm (no {MARKER_NAME}), so --overwrite will not "
                f"replace it; choose another {flag} or empty it yourself"
            )


def remove_remote_tree(url: str) -> None:
    """Delete everything under `url/`; only a prefix that carries domainlm's marker (the marker last,
    so a deletion cut short leaves a prefix that is still ours to delete)."""
    fs, root = filesystem(url)
    root = root.rstrip("/")
    with storage_errors(url, fs):
        files = _files(fs, root)
        if not files:
            return
        if _marker(fs, root) is None:
            raise ConfigError(
                f"{url}: not written by domainlm (no {MARKER_NAME} in it); refusing to delete it"
            )
        marker = f"{root}/{MARKER_NAME}"
        rest = [p for p in files if p != marker]
        if rest:
            fs.rm(rest)
        fs.rm(marker)


def _order(names: Iterable[str], last: tuple[str, ...]) -> list[str]:
    """The marker first, then the data, then the files whose presence means complete."""
    names = sorted(names)
    middle = [n for n in names if n != MARKER_NAME and n not in last]
    return [MARKER_NAME, *middle, *(n for n in names if n in last)]


def _clean_stale_temps(fs: Any, root: str, url: str) -> None:
    parent, name = root.rsplit("/", 1) if "/" in root else ("", root)
    for path in fs.glob(f"{parent}/{name}.tmp-*" if parent else f"{name}.tmp-*"):
        if _marker(fs, path) is not None:
            remove_remote_tree(fs.unstrip_protocol(path))


def _upload(local: Path, fs: Any, tmp: str, names: list[str], quiet: bool) -> None:
    sizes = {n: (local / n).stat().st_size for n in names}
    with make_progress(quiet) as progress:
        task = progress.add_task(f"upload {len(names)} files", total=sum(sizes.values()))
        for name in names:  # one by one, in commit order: the marker is up before any data
            fs.put_file(str(local / name), f"{tmp}/{name}")
            progress.update(task, advance=sizes[name])


def publish(local: Path, url: str, *, overwrite: bool, last: tuple[str, ...], quiet: bool = True) -> None:
    """Steps 3 and 4 of the module docstring: `local` (a finished output) becomes `url`."""
    fs, root = filesystem(url)
    root = root.rstrip("/")
    names = _order((p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()), last)
    tmp = f"{root}.tmp-{secrets.token_hex(6)}"
    with storage_errors(url, fs):
        _clean_stale_temps(fs, root, url)
        try:
            _upload(local, fs, tmp, names, quiet)
            check_remote_output(url, overwrite=overwrite)  # did anything appear while we worked?
            remove_remote_tree(url)  # only reached when empty, or marked and --overwrite
            for name in names:
                fs.copy(f"{tmp}/{name}", f"{root}/{name}")
        finally:
            with contextlib.suppress(Exception):  # a stale marked temp is cleaned by the next run
                remove_remote_tree(fs.unstrip_protocol(tmp))


@contextlib.contextmanager
def remote_output_dir(
    url: str, *, overwrite: bool, command: str, last: tuple[str, ...], quiet: bool = True
) -> Iterator[Path]:
    """Yield a marked local directory; on success its files become the remote output `url`."""
    check_remote_output(url, overwrite=overwrite)
    stage = Path(tempfile.mkdtemp(prefix="domainlm-out-"))
    os.chmod(stage, 0o755)
    write_marker(stage, command)
    try:
        yield stage
        publish(stage, url, overwrite=overwrite, last=last, quiet=quiet)
    finally:
        remove_tree(stage)
