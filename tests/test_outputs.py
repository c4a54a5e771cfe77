import json
import os
import stat
import threading

import pytest

from domainlm.errors import ConfigError
from domainlm.outputs import (
    MARKER_NAME,
    atomic_output_dir,
    atomic_write_text,
    check_output_dir,
    fingerprint_files,
    has_marker,
    output_lock,
    prepare_run_dir,
    remove_tree,
    write_marker,
)


def _snapshot(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def home(tmp_path, monkeypatch):
    """HOME points at a temp dir for the whole test: the real home is never touched."""
    fake = tmp_path / "home"
    fake.mkdir()
    monkeypatch.setenv("HOME", str(fake))
    return fake


def test_atomic_dir_appears_only_on_success(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_output_dir(out, command="test") as tmp:
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []  # no output, no temp dir, no lock file
    with atomic_output_dir(out, command="test") as tmp:
        (tmp / "done.bin").write_bytes(b"x")
    assert (out / "done.bin").read_bytes() == b"x"
    refused = pytest.raises(ConfigError, match="already exists; choose another --out or pass --overwrite")
    with refused, atomic_output_dir(out, command="test"):
        pass
    with atomic_output_dir(out, overwrite=True, command="test") as tmp:
        (tmp / "new.bin").write_bytes(b"y")
    assert sorted(p.name for p in out.iterdir()) == [MARKER_NAME, "new.bin"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_marker_says_which_command_wrote_it_and_when(tmp_path):
    with atomic_output_dir(tmp_path / "out", command="mix"):
        pass
    marker = json.loads((tmp_path / "out" / MARKER_NAME).read_text())
    assert marker["command"] == "mix" and marker["created"].endswith("+00:00")
    assert marker["version"] and has_marker(tmp_path / "out")
    (tmp_path / "out" / MARKER_NAME).write_text("not json")
    assert not has_marker(tmp_path / "out")


def test_overwrite_refuses_a_directory_domainlm_did_not_write(tmp_path):
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_bytes(b"years of work")
    refused = pytest.raises(ConfigError, match=f"not written by domainlm \\(no {MARKER_NAME}\\)")
    with refused, atomic_output_dir(mine, overwrite=True, command="mix"):
        pass
    assert _snapshot(mine) == {"chapter1.tex": b"years of work"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]


def test_an_empty_directory_may_be_used(tmp_path):
    (tmp_path / "out").mkdir()
    with atomic_output_dir(tmp_path / "out", command="test") as tmp:
        (tmp / "a").write_text("1")
    assert (tmp_path / "out" / "a").read_text() == "1" and has_marker(tmp_path / "out")


def test_protected_places_are_refused_even_when_marked(tmp_path, home, monkeypatch):
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    monkeypatch.chdir(work / "sub")
    write_marker(home, "mix")  # even a marker does not make the home directory replaceable
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    cases = {
        "/": "is the filesystem root",
        str(home): "is your home directory",
        ".": "is the current directory",
        "..": "contains the current directory",
        str(repo): "is a git repository root",
    }
    for out, reason in cases.items():
        with pytest.raises(ConfigError, match=reason):
            check_output_dir(out, overwrite=True)
        with pytest.raises(ConfigError, match=reason):
            prepare_run_dir(out, command="pretrain", overwrite=True)
    with pytest.raises(ConfigError, match="is your home directory"):
        remove_tree(home)
    assert has_marker(home)


def test_symlinks_are_resolved_before_comparing(tmp_path, home):
    (tmp_path / "link").symlink_to(home)
    with pytest.raises(ConfigError, match="is your home directory"):
        check_output_dir(tmp_path / "link", overwrite=True)


def test_a_directory_holding_an_input_is_refused(tmp_path):
    data = tmp_path / "data"
    (data / "legal").mkdir(parents=True)
    corpus = data / "legal" / "a.jsonl"
    corpus.write_text('{"text": "x"}\n')
    write_marker(data, "curate")  # marked, yet it holds this command's input
    for out in (data, data / "legal"):
        with pytest.raises(ConfigError, match=f"contains this command's input {corpus}"):
            check_output_dir(out, overwrite=True, inputs=[corpus])
    assert corpus.read_text() == '{"text": "x"}\n'


def test_out_that_is_a_file_or_under_one(tmp_path):
    (tmp_path / "notes.txt").write_text("keep")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        check_output_dir(tmp_path / "notes.txt", overwrite=True)
    with pytest.raises(ConfigError, match="lies under the file .*notes.txt"):
        check_output_dir(tmp_path / "notes.txt" / "out", overwrite=True)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="is a broken symlink"):
        check_output_dir(tmp_path / "dangling", overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "keep"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere, so no directory is read-only")
def test_out_in_a_read_only_directory(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match="is not writable"):
            check_output_dir(locked / "new" / "out", overwrite=False)
    finally:
        locked.chmod(0o755)


def test_read_only_check_follows_os_access(tmp_path, monkeypatch):
    """The rule itself, also when the tests run as root (where chmod 0o555 changes nothing)."""
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ConfigError, match=f"{tmp_path} is not writable"):
        check_output_dir(tmp_path / "out", overwrite=False)


def test_second_writer_fails_at_once_naming_the_first(tmp_path):
    out = tmp_path / "out"
    with output_lock(out, "mix"):
        lock = json.loads((tmp_path / ".out.lock").read_text())
        assert lock["pid"] == os.getpid() and lock["command"] == "mix"
        busy = pytest.raises(
            ConfigError, match=f"another domainlm command is writing it \\(pid {os.getpid()} "
        )
        with busy, atomic_output_dir(out, command="curate"):
            pass
    assert list(tmp_path.iterdir()) == []  # the lock file is gone with its holder
    with atomic_output_dir(out, command="curate"):
        pass


def test_lock_is_exclusive_across_threads(tmp_path):
    """flock locks are per open file: two opens in one process exclude each other like two processes."""
    errors, ready, done = [], threading.Event(), threading.Event()

    def hold():
        with output_lock(tmp_path / "out", "mix"):
            ready.set()
            done.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    ready.wait(10)
    try:
        with output_lock(tmp_path / "out", "eval"):
            pass
    except ConfigError as exc:
        errors.append(str(exc))
    done.set()
    thread.join()
    assert len(errors) == 1 and "`domainlm mix`" in errors[0]


def test_stale_temp_dirs_are_cleaned_only_when_ours(tmp_path):
    ours = tmp_path / ".out.tmp-dead"
    ours.mkdir()
    write_marker(ours, "mix")
    foreign = tmp_path / ".out.tmp-not-ours"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with atomic_output_dir(tmp_path / "out", command="mix"):
        pass
    assert not ours.exists() and (foreign / "keep.txt").read_text() == "x"


def test_remove_tree_deletes_only_what_domainlm_wrote(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "a.txt").write_text("x")
    with pytest.raises(ConfigError, match="not written by domainlm .* refusing to delete it"):
        remove_tree(mine)
    with pytest.raises(ConfigError, match="refusing to delete it"):
        remove_tree(mine / "a.txt")
    assert (mine / "a.txt").read_text() == "x"
    run = tmp_path / "run"
    (run / "checkpoints" / "step_1").mkdir(parents=True)
    write_marker(run, "pretrain")
    (run / "link").symlink_to(mine)  # a link inside our dir: removing it must not follow it
    remove_tree(run / "checkpoints" / "step_1")
    remove_tree(run / "link")
    assert sorted(p.name for p in run.iterdir()) == [MARKER_NAME, "checkpoints"]
    assert (mine / "a.txt").read_text() == "x"
    remove_tree(run)
    assert not run.exists()
    remove_tree(run)  # already gone: nothing to do


def test_remove_tree_does_not_follow_a_symlinked_parent(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data").mkdir()
    run = tmp_path / "run"
    run.mkdir()
    write_marker(run, "pretrain")
    (run / "link").symlink_to(mine)
    with pytest.raises(ConfigError, match="refusing to delete it"):
        remove_tree(run / "link" / "data")
    assert (mine / "data").is_dir()


def test_prepare_run_dir_creates_resumes_and_overwrites_only_marked(tmp_path):
    run = tmp_path / "runs" / "legal"
    assert prepare_run_dir(run, command="pretrain", overwrite=False) == run
    assert has_marker(run)
    (run / "ckpt.bin").write_bytes(b"1")
    prepare_run_dir(run, command="pretrain", overwrite=False)  # resume: kept
    assert (run / "ckpt.bin").read_bytes() == b"1"
    with pytest.raises(ConfigError, match="holds the output of `domainlm pretrain`, not of `domainlm demo`"):
        prepare_run_dir(run, command="demo", overwrite=False)
    prepare_run_dir(run, command="pretrain", overwrite=True)
    assert [p.name for p in run.iterdir()] == [MARKER_NAME]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x").write_text("x")
    with pytest.raises(ConfigError, match="not written by domainlm"):
        prepare_run_dir(foreign, command="pretrain", overwrite=True)
    assert (foreign / "x").read_text() == "x"


def test_fingerprint_depends_on_content_not_order(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("1")
    b.write_text("2")
    first = fingerprint_files([a, b])
    assert first == fingerprint_files([b, a])
    b.write_text("3")
    assert fingerprint_files([a, b]) != first


def test_outputs_follow_the_umask_not_mkstemp_0600(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_output_dir(tmp_path / "out", command="test"):
            pass
        atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644
