import pytest

from domainlm.errors import ConfigError
from domainlm.outputs import atomic_output_dir, fingerprint_files


def test_atomic_dir_appears_only_on_success(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_output_dir(out) as tmp:
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("killed")
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))
    with atomic_output_dir(out) as tmp:
        (tmp / "done.bin").write_bytes(b"x")
    assert (out / "done.bin").read_bytes() == b"x"
    with pytest.raises(ConfigError, match="already exists"), atomic_output_dir(out):
        pass
    with atomic_output_dir(out, overwrite=True) as tmp:
        (tmp / "new.bin").write_bytes(b"y")
    assert sorted(p.name for p in out.iterdir()) == ["new.bin"]


def test_stale_temp_dirs_are_cleaned(tmp_path):
    stale = tmp_path / ".out.tmp-dead"
    stale.mkdir()
    with atomic_output_dir(tmp_path / "out"):
        pass
    assert not stale.exists()


def test_fingerprint_depends_on_content_not_order(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("1")
    b.write_text("2")
    first = fingerprint_files([a, b])
    assert first == fingerprint_files([b, a])
    b.write_text("3")
    assert fingerprint_files([a, b]) != first


def test_outputs_follow_the_umask_not_mkstemp_0600(tmp_path):
    import os
    import stat

    from domainlm.outputs import atomic_write_text

    old = os.umask(0o022)
    try:
        with atomic_output_dir(tmp_path / "out"):
            pass
        atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644
