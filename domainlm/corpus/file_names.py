"""The name a document id gives its file: relative to the corpus path the user gave.

A document id says where a document came from (`part-0001.jsonl:12`, `sub/x.jsonl.gz:3`,
`data.parquet#7`), and ids are written into outputs (curate's kept documents and removal log, a
mix's held-out text). Naming the file by its full path would make those bytes depend on where the
corpus lies: the same files in another folder, or in `s3://bucket/corpus/`, would give other outputs.
So a file is named from the path that listed it:
- a file (or a saved `datasets` folder): its own name;
- a folder: its path below that folder;
- a glob: its path below the glob's last folder without a wildcard;
- a URL the same way (`file://` as the local path it names).
Two files of one corpus that would get the same name (`a/data.jsonl` and `b/data.jsonl` given as
files) are named from the folder both lie in (`a/data.jsonl`, `b/data.jsonl`): that depends only on
the corpus's own layout, not on where it lies. Messages about a problem in a file
keep its full path or URL: they are for finding the file.
"""

from __future__ import annotations

import os
from pathlib import Path

from domainlm.storage import is_url, local_path_of

_WILDCARDS = "*?["


def _has_wildcard(text: str) -> bool:
    return any(ch in text for ch in _WILDCARDS)


def components(path: object) -> tuple[str, ...]:
    """A path's folders and name, outermost first: a URL's after its scheme (`s3://` first), a
    local path's made absolute (lexically, as `os.path.abspath`: the same however it was written)."""
    text = str(path)
    if is_url(text):
        scheme, rest = text.split("://", 1)
        return (f"{scheme.lower()}://", *(part for part in rest.split("/") if part))
    return Path(os.path.abspath(text)).parts


def spec_base(spec: object, found: list) -> tuple[str, ...]:
    """The components of the folder that the files `found` for `spec` are named from."""
    text = str(spec)
    local = local_path_of(text) if is_url(text) else None
    if local is not None:  # file:// is read as the local path: named the same way
        text = str(local)
    if not is_url(text):
        text = os.path.expanduser(text)
    parts = components(text)
    if _has_wildcard(text.split("://", 1)[1] if is_url(text) else text):
        # the components from the first wildcard on are the pattern's own: count them on the spec
        # as written, since an absolute folder above it (the cwd) may hold a `[` of its own
        own = text.split("://", 1)[1].split("/") if is_url(text) else Path(os.path.normpath(text)).parts
        own = [part for part in own if part]
        first = next(k for k, part in enumerate(own) if _has_wildcard(part))
        return parts[: len(parts) - (len(own) - first)]
    if len(found) == 1 and components(found[0]) == parts:
        return parts[:-1]  # a file: named by its own name
    return parts


def _depth(parts: tuple[str, ...], base: tuple[str, ...]) -> int:
    """How many trailing components name a file found below `base` (at least its own name)."""
    if len(parts) > len(base) and parts[: len(base)] == base:
        return len(parts) - len(base)
    return 1


def _common(paths: list[tuple[str, ...]]) -> tuple[str, ...]:
    first = paths[0]
    size = next(
        (k for k in range(len(first)) if any(len(p) <= k or p[k] != first[k] for p in paths)), len(first)
    )
    return first[:size]


def file_names(files: list, bases: list[tuple[str, ...]]) -> list[str]:
    """Each file's name relative to its base; files whose names clash are named relative to the
    folder they all lie in (so the names depend on where they lie only when they lie apart).

    A name that would need every component is the full path or URL (unique: files are listed once).
    """
    parts = [components(f) for f in files]
    depth = [_depth(p, b) for p, b in zip(parts, bases, strict=True)]

    def name(k: int) -> str:
        return str(files[k]) if depth[k] >= len(parts[k]) else "/".join(parts[k][-depth[k] :])

    names = [name(k) for k in range(len(files))]
    while True:
        groups: dict[str, list[int]] = {}
        for k, text in enumerate(names):
            groups.setdefault(text, []).append(k)
        clashes = [group for group in groups.values() if len(group) > 1]
        if not clashes:
            return names
        for group in clashes:
            # equal names have equal depths d, so the shared folder is above their last d
            # components: each depth grows by at least one, and the loop ends
            folder = _common([parts[k][:-1] for k in group])
            for k in group:
                depth[k] = len(parts[k]) - len(folder)
                names[k] = name(k)
