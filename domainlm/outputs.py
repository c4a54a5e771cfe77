"""Crash-safe, delete-safe outputs and fingerprints shared by every stage that writes files.

A stage builds its whole output in a hidden temp directory beside the target and renames it into
place at the end, so a killed run never leaves a directory that looks complete.

Every output directory carries a marker file (MARKER_NAME: which command wrote it, when, which
version). `--overwrite` replaces only a directory that carries it, and `remove_tree` is the only
function in the package that deletes anything: it refuses whatever domainlm did not write, so no
flag, path typo or `--out ~` can delete a user's files.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from domainlm.errors import ConfigError

_CHUNK_BYTES = 1 << 20
MARKER_NAME = ".domainlm-output.json"
_PACKAGE_DIR = Path(__file__).resolve().parent  # domainlm's own code: never an output, never deleted


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("domainlm")
    except PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------------------------------------- marker


def write_marker(directory: Path, command: str) -> None:
    """Mark `directory` as written by `command`: from now on --overwrite and remove_tree may delete it."""
    write_json(Path(directory) / MARKER_NAME, {"command": command, "created": _now(), "version": _version()})


def _read_marker(directory: Path) -> dict | None:
    try:
        data = json.loads((Path(directory) / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("command"), str) else None


def has_marker(directory: Path) -> bool:
    """True when `directory` is a directory that a domainlm command wrote (it carries a valid marker)."""
    return Path(directory).is_dir() and _read_marker(directory) is not None


# ---------------------------------------------------------------------------------------------- checks


def _absolute(path: Path) -> Path:
    """The path as typed, made absolute (symlinks kept: messages show what the user wrote)."""
    return Path(os.path.abspath(os.fspath(path)))


def _is_empty_dir(path: Path) -> bool:
    try:
        return path.is_dir() and next(path.iterdir(), None) is None
    except OSError:  # unreadable: treat as holding someone's files
        return False


def _is_same_or_ancestor(candidate: Path, of: Path) -> bool:
    return candidate == of or candidate in of.parents


def _protected(real: Path) -> str | None:
    """Why the resolved path `real` may never be replaced or deleted, or None when it may be."""
    if real == Path(real.anchor):
        return "is the filesystem root"
    home = Path(os.path.expanduser("~")).resolve()  # honours $HOME, like Path.home()
    if _is_same_or_ancestor(real, home):
        return "is your home directory" if real == home else f"contains your home directory {home}"
    with contextlib.suppress(OSError):  # a deleted cwd has no path to protect
        cwd = Path.cwd().resolve()
        if _is_same_or_ancestor(real, cwd):
            return "is the current directory" if real == cwd else f"contains the current directory {cwd}"
    if (real / ".git").exists():
        return "is a git repository root"
    if _is_same_or_ancestor(real, _PACKAGE_DIR) or _PACKAGE_DIR in real.parents:
        return f"is or contains domainlm's own code ({_PACKAGE_DIR})"
    return None


def _check_place(out: Path, flag: str, inputs: Iterable[Path | str]) -> Path:
    """Checks that do not depend on --overwrite: a directory may be made here and is no one's data."""
    shown = _absolute(out)
    where = f"{flag} {shown}"
    if shown.is_symlink() and not shown.exists():
        raise ConfigError(f"{where}: is a broken symlink; remove it or choose another path")
    if shown.exists() and not shown.is_dir():
        raise ConfigError(f"{where}: is a file, not a directory; choose a directory path")
    existing = shown.parent  # the temp dir, the lock and the rename all happen in the parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{where}: lies under the file {existing}; choose a path under a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{where}: {existing} is not writable; choose a directory you can write to")
    real = shown.resolve()
    reason = _protected(real)
    if reason:
        raise ConfigError(f"{where}: {reason}; domainlm never writes over it, choose a new directory")
    for item in inputs:
        if _is_same_or_ancestor(real, _absolute(Path(item)).resolve()):
            raise ConfigError(
                f"{where}: contains this command's input {item}; choose a directory outside the inputs"
            )
    return shown


def check_output_dir(
    out: Path, *, overwrite: bool, inputs: Iterable[Path | str] = (), flag: str = "--out"
) -> Path:
    """Validate an output directory before any work (writes nothing); return its absolute path.

    Allowed: a new path in a writable place, an existing empty directory, or (with --overwrite) a
    directory a domainlm command wrote. Never: a file, /, home, cwd or its parents, a git root,
    domainlm's own code, or a directory holding one of the command's `inputs`.
    """
    shown = _check_place(out, flag, inputs)
    if shown.exists() and not _is_empty_dir(shown):
        if not overwrite:
            raise ConfigError(
                f"{shown}: output directory already exists; choose another {flag} or pass --overwrite"
            )
        if not has_marker(shown):
            raise ConfigError(
                f"{flag} {shown}: not written by domainlm (no {MARKER_NAME}), so --overwrite will not "
                f"replace it; choose another {flag} or empty it yourself"
            )
    return shown


# ---------------------------------------------------------------------------------------------- lock


def _lock_path(out: Path) -> Path:
    return out.parent / f".{out.name}.lock"


def _holder(fd: int) -> str:
    """Who holds the lock, from what it wrote into the lock file."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode("utf-8"))
        return f"pid {info['pid']} on {info['host']}, `domainlm {info['command']}`, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that is just starting"


@contextlib.contextmanager
def output_lock(out: Path, command: str) -> Iterator[None]:
    """Hold an exclusive lock on writing `out`; a second writer fails at once naming the first.

    The lock is an flock on `.<name>.lock` beside `out`: the kernel drops it when its holder dies,
    so a killed run never blocks the next one.
    """
    out = _absolute(out)
    path = _lock_path(out)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise ConfigError(
                f"--out {out}: another domainlm command is writing it ({holder}); wait for it to "
                "finish or choose another --out"
            ) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed this file while we opened it: lock the new one
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "since": _now()}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode("utf-8"))
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # while still locked, so no one can be holding this file after us
        os.close(fd)


# ---------------------------------------------------------------------------------------------- writing


def _clean_stale_temps(out: Path) -> None:
    """Temp dirs of killed runs (only ours: they carry the marker from the moment they exist)."""
    for stale in out.parent.glob(f".{out.name}.tmp-*"):
        if has_marker(stale):
            remove_tree(stale)


def _make_temp(out: Path, command: str) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; outputs get the usual permissions
    write_marker(tmp, command)  # first thing: the finished output carries it, a stale temp is ours
    return tmp


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename `tmp` to `out`; an old `out` must still be empty or (with overwrite) marked."""
    if not out.is_symlink() and _is_empty_dir(out):
        os.replace(tmp, out)  # renaming onto an empty directory is atomic
        return
    if os.path.lexists(out):
        if not overwrite or not has_marker(out):  # something changed it while we worked
            raise ConfigError(
                f"--out {out}: files appeared in it while this command ran; nothing was replaced, "
                "choose another --out"
            )
        old = _make_temp(out, "trash")  # marked: a run killed right here leaves a stale temp dir we clean
        os.replace(out, old / out.name)
        os.replace(tmp, out)
        remove_tree(old)
        return
    os.replace(tmp, out)


@contextlib.contextmanager
def atomic_output_dir(
    out: Path, overwrite: bool = False, *, command: str, inputs: Iterable[Path | str] = ()
) -> Iterator[Path]:
    """Yield a marked temp dir that becomes `out` on success; on failure `out` is untouched.

    check_output_dir's rules apply; `out` is locked for the whole write.
    """
    inputs = list(inputs)
    out = check_output_dir(out, overwrite=overwrite, inputs=inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(out, command):
        check_output_dir(out, overwrite=overwrite, inputs=inputs)  # another writer may have finished
        _clean_stale_temps(out)
        tmp = _make_temp(out, command)
        try:
            yield tmp
            _move_into_place(tmp, out, overwrite)
        except BaseException:
            remove_tree(tmp)
            raise


def prepare_run_dir(
    run_dir: Path, *, command: str, overwrite: bool, inputs: Iterable[Path | str] = (), flag: str = "--out"
) -> Path:
    """Create (or accept, to resume) a directory that is written in place for a long time.

    A new or empty directory is created and marked; an existing one is accepted only when a
    `command` run wrote it, and --overwrite deletes a marked one first. Returns the absolute path.
    """
    run_dir = _check_place(run_dir, flag, list(inputs))
    if run_dir.exists() and not _is_empty_dir(run_dir):
        marker = _read_marker(run_dir)
        if marker is None:
            raise ConfigError(
                f"{flag} {run_dir}: not written by domainlm (no {MARKER_NAME}); domainlm will neither "
                f"write into nor replace it, choose another {flag}"
            )
        if overwrite:
            with output_lock(run_dir, command):
                remove_tree(run_dir)
        elif marker["command"] != command:
            raise ConfigError(
                f"{flag} {run_dir}: holds the output of `domainlm {marker['command']}`, not of "
                f"`domainlm {command}`; choose another {flag} or pass --overwrite to replace it"
            )
        elif not os.access(run_dir, os.W_OK | os.X_OK):
            raise ConfigError(f"{flag} {run_dir}: is not writable; choose a directory you can write to")
    run_dir.mkdir(parents=True, exist_ok=True)
    if not has_marker(run_dir):
        write_marker(run_dir, command)
    return run_dir


# ---------------------------------------------------------------------------------------------- deleting


def _marked_owner(real: Path) -> Path | None:
    """The directory carrying the marker that makes `real` ours: itself or an ancestor."""
    for candidate in (real, *real.parents):
        if has_marker(candidate):
            return candidate
    return None


def remove_tree(path: Path) -> None:
    """Delete `path` (directory, file or symlink): the one deleter of the package.

    Only what domainlm wrote: `path` must carry the marker or lie inside a directory that does (our
    temp dirs carry it from their first moment). Protected places (/, home, cwd, a git root) are
    refused even when marked. A symlink is removed itself; what it points to is never touched.
    """
    if isinstance(path, str) and "://" in path:  # a remote prefix: the same marker rule, in storage
        from domainlm.storage.output import remove_remote_tree

        remove_remote_tree(path)
        return
    shown = _absolute(path)
    if not os.path.lexists(shown):
        return
    real = shown.parent.resolve() / shown.name  # a symlinked parent must not smuggle in another tree
    is_tree = real.is_dir() and not real.is_symlink()
    if _marked_owner(real if is_tree else real.parent) is None:
        raise ConfigError(
            f"{shown}: not written by domainlm (no {MARKER_NAME} in it or above it); refusing to delete it"
        )
    reason = _protected(real) if is_tree else None
    if reason:
        raise ConfigError(f"{shown}: {reason}; refusing to delete it even though it carries {MARKER_NAME}")
    if is_tree:
        shutil.rmtree(real)
    else:
        os.unlink(real)


# ---------------------------------------------------------------------------------------------- files


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file through a temp name + rename, so readers never see half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; readers on a shared cluster need more
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def to_json(data: Any) -> str:
    """Stable JSON text (sorted keys off: declaration order is kept; deterministic for equal input)."""
    return json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, to_json(data))


def file_digest(path: Path, digest: Any) -> str:
    """Feed a file to a hashlib-style `digest` in 1 MiB chunks (memory flat); its hex digest."""
    with path.open("rb") if hasattr(path, "url") else open(path, "rb") as handle:  # url: RemotePath
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    return file_digest(path, hashlib.sha256())


def fingerprint_files(paths: list[Path], digests: Mapping[Path, str] | None = None) -> str:
    """One sha256 over the names and contents of `paths` (sorted), e.g. a tokenizer directory.

    `digests`: file_sha256 values the caller already has (the token cache hashes each corpus file
    for its key), so no file is read twice."""
    known = digests or {}
    digest = hashlib.sha256()
    for path in sorted(Path(p) if isinstance(p, str) else p for p in paths):  # Path or RemotePath
        digest.update(path.name.encode())
        digest.update((known.get(path) or file_sha256(path)).encode())
    return digest.hexdigest()
