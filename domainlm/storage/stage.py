"""A remote folder -> the same files on local disk, with one progress bar over the bytes.

Training and memmaps need local random access; this copies what a stage will read, file by file
(fsspec streams each one; memory stays flat whatever the size). Checking what arrived is the
caller's: it knows which checksums its manifest records (domainlm.mix.stage for a mix).
"""

from __future__ import annotations

from pathlib import Path

from domainlm.progress import make_progress
from domainlm.storage import filesystem, storage_errors


def remote_sizes(url: str) -> dict[str, int]:
    """Relative name -> size of every file under `url/`."""
    fs, root = filesystem(url)
    root = root.rstrip("/")
    with storage_errors(url, fs):
        found = fs.find(root, detail=True)
    inside = sorted((path, info) for path, info in found.items() if path.startswith(f"{root}/"))
    return {path[len(root) + 1 :]: int(info.get("size") or 0) for path, info in inside}  # not root.tmp-*


def download_files(url: str, names: dict[str, int], local: Path, *, quiet: bool, label: str) -> None:
    """Copy `url/<name>` to `local/<name>` for each name (sizes: the progress bar's total)."""
    fs, root = filesystem(url)
    root = root.rstrip("/")
    with make_progress(quiet) as progress, storage_errors(url, fs):
        task = progress.add_task(label, total=sum(names.values()))
        for name, size in names.items():
            target = local / name
            target.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(f"{root}/{name}", str(target))
            progress.update(task, advance=size, description=f"{label} ({name})")
