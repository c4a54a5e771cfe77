"""`--overwrite` deletes only what domainlm wrote (issue 10, section 1), for every command with --out.

Each command runs through the real entry point (`domainlm.cli.main`: one `error:` line, exit 2) on
tiny inputs, with --out (a) a directory it wrote, (b) a non-empty directory it did not write,
(c) `.`, (d) a parent of one of its inputs, (e) $HOME. HOME is a temp directory set inside this
process, never the real one. After (b)-(e) every file that was there before is byte-identical.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from domainlm.assets import sample_corpus
from domainlm.demo.pipeline import prepare_out
from domainlm.errors import ConfigError
from domainlm.outputs import MARKER_NAME, check_output_dir, has_marker, output_lock, write_marker
from tests.cli_runner import run_cli

GPT2 = "gpt2"  # the shipped GPT-2 tokenizer: nothing to train for the commands that only need one


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _texts(domain: str, num_docs: int, chars: int) -> list[str]:
    import gzip

    with gzip.open(sample_corpus(domain), "rt", encoding="utf-8") as handle:
        return [json.loads(line)["text"][:chars] for _, line in zip(range(num_docs), handle, strict=False)]


def _jsonl(path: Path, texts: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


def _tiny_model(out: Path) -> Path:
    """A 2-layer Llama over a 300-token byte-level BPE (random weights, built here: nothing downloaded)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.eval.conftest import _ids, _save, build_tokenizer

    tokenizer = build_tokenizer(out)
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=64, bos_token_id=tokenizer.bos_token_id, **_ids(tokenizer),
    )  # fmt: skip
    return _save(LlamaForCausalLM(config), tokenizer, out)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """Every command's inputs, each in its own folder (that folder is case (d)'s --out)."""
    root = tmp_path_factory.mktemp("world")
    corpus = _jsonl(root / "corpora" / "legal.jsonl", _texts("legal", 12, 1500))
    general = _jsonl(root / "corpora" / "general.jsonl", _texts("general", 12, 1500))
    mix_yaml = root / "mixes" / "tiny.yaml"
    mix_yaml.parent.mkdir()
    mix_yaml.write_text(
        f"sources:\n  legal: {{paths: [{corpus}], ratio: 0.5}}\n  general: {{paths: [{general}], ratio: 0.5}}\n"
        "total_tokens: all\nval_fraction: 0.2\nseed: 0\n",
        encoding="utf-8",
    )
    mix = root / "built" / "mix"  # pretrain's input, made by the public command
    argv = [sys.executable, "-m", "domainlm", "mix", str(mix_yaml), "--tokenizer", GPT2, "--seq-len", "64"]
    subprocess.run([*argv, "--out", str(mix), "--quiet"], check=True, capture_output=True, timeout=300)
    model = _tiny_model(root / "models" / "llama")
    return {"root": root, "corpus": corpus, "mix_yaml": mix_yaml, "mix": mix, "model": model}


def _argv(command: str, world: dict[str, Path], out: Path | str) -> list[str]:
    """The command line of `command` writing to `out`, on the tiny inputs."""
    corpus = str(world["corpus"])
    argv = {
        "tokenizer train": ["tokenizer", "train", "--corpus", f"legal={corpus}", "--vocab-size", "300"],
        "tokenizer extend": ["tokenizer", "extend", "--base", GPT2, "--corpus", f"legal={corpus}"],
        "vocab report": ["vocab", "report", "--tokenizer", GPT2, "--corpus", f"legal={corpus}"],
        "curate": ["curate", corpus, "--workers", "1"],
        "mix": ["mix", str(world["mix_yaml"]), "--tokenizer", GPT2, "--seq-len", "64"],
        "eval": ["eval", "--model", str(world["model"]), "--data", f"legal={corpus}", "--max-length", "32"],
        # --launcher slurm writes the run dir (recipe, DeepSpeed config, sbatch script) without training.
        "pretrain": [
            "pretrain",
            "--recipe",
            "tiny_cpu",
            "--launcher",
            "slurm",
            "--set",
            f"data.mix={world['mix']}",
        ],
        "demo": ["demo", "--quick"],
    }[command]
    extra = {
        "tokenizer extend": ["--num-tokens", "5"],
        "vocab report": ["--sample-docs", "4"],
        "eval": ["--max-docs", "2"],
        "pretrain": ["--set", "data.seq_len=64"],
    }
    quiet = [] if command in ("demo", "pretrain") else ["--quiet"]
    return [*argv, *extra.get(command, []), "--out", str(out), *quiet]


COMMANDS = [
    "tokenizer train",
    "tokenizer extend",
    "vocab report",
    "curate",
    "mix",
    "eval",
    "pretrain",
    "demo",
]
# Inputs of each command whose folder is case (d). The demo reads only shipped corpora: its (d) is
# test_demo_refuses_the_shipped_corpora below, which never hands the package's own folder to a command.
INPUT_OF = {"eval": "model", "pretrain": "mix"}


def _assert_refused(code: int, err: str, reason: str) -> None:
    assert code == 2, err[-2000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and reason in errors[0], err[-2000:]
    assert "Traceback" not in err


@pytest.fixture
def sandbox(tmp_path, monkeypatch) -> dict[str, Path]:
    """A fake HOME and a current directory, both holding someone's files; matplotlib kept out of HOME."""
    home, work = tmp_path / "home", tmp_path / "work"
    for folder in (home, work):
        (folder / "notes").mkdir(parents=True)
        (folder / "notes" / "thesis.tex").write_bytes(b"years of work")
        (folder / "photo.jpg").write_bytes(bytes(range(256)))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    monkeypatch.chdir(work)
    return {"home": home, "work": work}


def _case_out(case: str, command: str, world, sandbox, tmp_path) -> tuple[Path | str, Path, str]:
    """(--out as typed, the folder to snapshot, the reason the one error line must give)."""
    if case == "foreign":
        foreign = tmp_path / "foreign"
        (foreign / "sub").mkdir(parents=True)
        (foreign / "sub" / "data.bin").write_bytes(b"\x00\x01 mine")
        (foreign / "readme.txt").write_text("not domainlm's")
        return foreign, foreign, "not written by domainlm"
    if case == "cwd":
        return ".", sandbox["work"], "is the current directory"
    if case == "input_parent":
        folder = world[INPUT_OF.get(command, "corpus")].parent
        return folder, folder, "contains this command's input"
    return sandbox["home"], sandbox["home"], "is your home directory"


@pytest.mark.parametrize("case", ["foreign", "cwd", "input_parent", "home"])
@pytest.mark.parametrize("command", COMMANDS)
def test_overwrite_refuses_what_domainlm_did_not_write(
    command, case, world, sandbox, tmp_path, monkeypatch, capsys
):
    if command == "demo" and case == "input_parent":
        pytest.skip("the demo takes no input paths; see test_demo_refuses_the_shipped_corpora")
    out, folder, reason = _case_out(case, command, world, sandbox, tmp_path)
    before, inputs_before = _snapshot(folder), _snapshot(world["root"])
    code, err = run_cli(monkeypatch, capsys, [*_argv(command, world, out), "--overwrite"])
    _assert_refused(code, err, reason)
    assert _snapshot(folder) == before
    assert _snapshot(world["root"]) == inputs_before
    assert sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(".")) == []  # no temp, no lock


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "demo"])
def test_overwrite_replaces_what_the_command_wrote(command, world, sandbox, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    code, err = run_cli(monkeypatch, capsys, _argv(command, world, out))
    assert code == 0, err[-3000:]
    marker = json.loads((out / MARKER_NAME).read_text(encoding="utf-8"))
    assert marker["command"] == command
    (out / "stale.txt").write_text("from an earlier run")
    code, err = run_cli(monkeypatch, capsys, _argv(command, world, out))
    if command == "pretrain":  # a run dir is written in place: without --overwrite it is resumed, kept
        assert code == 0 and (out / "stale.txt").exists(), err[-3000:]
    else:
        _assert_refused(code, err, "already exists; choose another")
    code, err = run_cli(monkeypatch, capsys, [*_argv(command, world, out), "--overwrite"])
    assert code == 0, err[-3000:]
    assert has_marker(out) and not (out / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp dir, no lock


def test_demo_out_it_wrote_is_replaced(tmp_path):
    """A real demo run takes minutes: its out folder rule is checked at the unit level."""
    out = tmp_path / "demo"
    prepare_out(out, overwrite=False)
    assert json.loads((out / MARKER_NAME).read_text())["command"] == "demo"
    (out / "run").mkdir()
    (out / "run" / "old.bin").write_bytes(b"x")
    with pytest.raises(ConfigError, match="already exists"):
        prepare_out(out, overwrite=False)
    prepare_out(out, overwrite=True)
    assert [p.name for p in out.iterdir()] == [MARKER_NAME]


def test_demo_refuses_the_shipped_corpora():
    with pytest.raises(ConfigError, match="domainlm's own code"):
        check_output_dir(sample_corpus("legal").parent, overwrite=True)


@pytest.mark.parametrize("command", ["curate", "tokenizer train"])
def test_out_dot_is_refused_even_without_overwrite(command, world, sandbox, monkeypatch, capsys):
    before = _snapshot(sandbox["work"])
    code, err = run_cli(monkeypatch, capsys, _argv(command, world, "."))
    _assert_refused(code, err, "is the current directory")
    assert _snapshot(sandbox["work"]) == before


@pytest.mark.parametrize("command", ["curate", "mix", "tokenizer train"])
def test_out_under_a_file_is_refused(command, world, sandbox, tmp_path, monkeypatch, capsys):
    # Also the read-only case when the tests run as root: root may write anywhere, so a chmod 0o555
    # folder is writable to it and only a path under a file is truly impossible to create.
    (tmp_path / "notes.txt").write_text("keep")
    code, err = run_cli(monkeypatch, capsys, _argv(command, world, tmp_path / "notes.txt" / "out"))
    _assert_refused(code, err, "lies under the file")
    code, err = run_cli(monkeypatch, capsys, [*_argv(command, world, tmp_path / "notes.txt"), "--overwrite"])
    _assert_refused(code, err, "is a file, not a directory")
    assert (tmp_path / "notes.txt").read_text() == "keep"


def test_out_in_a_read_only_directory_is_refused(world, sandbox, tmp_path, monkeypatch, capsys):
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: permissions do not apply (see test_out_under_a_file_is_refused)")
        code, err = run_cli(monkeypatch, capsys, _argv("curate", world, locked / "out"))
        _assert_refused(code, err, "is not writable")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("command", ["curate", "mix"])
def test_second_writer_fails_at_once_naming_the_first(command, world, sandbox, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    with output_lock(out, "mix"):
        code, err = run_cli(monkeypatch, capsys, _argv(command, world, out))
        _assert_refused(code, err, "another domainlm command is writing it (pid ")
        assert "`domainlm mix`, since " in err
        assert not out.exists()
    code, err = run_cli(monkeypatch, capsys, _argv(command, world, out))
    assert code == 0, err[-3000:]


def test_a_marked_mix_that_is_an_input_is_not_replaced(world, sandbox, tmp_path, monkeypatch, capsys):
    """eval --data MIX --out MIX --overwrite: the mix carries the marker, yet it is this command's input."""
    mix = tmp_path / "mix"
    code, err = run_cli(monkeypatch, capsys, _argv("mix", world, mix))
    assert code == 0, err[-3000:]
    before = _snapshot(mix)
    argv = ["eval", "--model", str(world["model"]), "--data", str(mix), "--max-docs", "1"]
    code, err = run_cli(monkeypatch, capsys, [*argv, "--max-length", "32", "--out", str(mix), "--overwrite"])
    _assert_refused(code, err, "contains this command's input")
    assert _snapshot(mix) == before


def test_real_entry_point_exits_2_with_one_line(world, tmp_path):
    """The same rule through `python -m domainlm`, HOME pointed at a temp dir in the child's env only."""
    import os

    home = tmp_path / "home"
    (home / "docs").mkdir(parents=True)
    (home / "docs" / "cv.pdf").write_bytes(b"%PDF")
    env = {**os.environ, "HOME": str(home), "MPLCONFIGDIR": str(tmp_path / "mpl")}
    argv = [sys.executable, "-m", "domainlm", *_argv("curate", world, home), "--overwrite"]
    result = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        f"error: --out {home}: is your home directory; domainlm never writes over it, choose a new directory"
    ]
    assert _snapshot(home) == {"docs/cv.pdf": b"%PDF"}


def test_marker_in_home_does_not_make_it_replaceable(world, sandbox, monkeypatch, capsys):
    write_marker(sandbox["home"], "curate")
    before = _snapshot(sandbox["home"])
    code, err = run_cli(monkeypatch, capsys, [*_argv("curate", world, sandbox["home"]), "--overwrite"])
    _assert_refused(code, err, "is your home directory")
    assert _snapshot(sandbox["home"]) == before


# The module attribute each command's measuring starts from (looked up at call time, so patchable).
MEASURING = {
    "vocab report": ("domainlm.tokenizer.coverage", "build_coverage_report"),
    "eval": ("domainlm.eval.data", "load_domains"),
}


@pytest.mark.parametrize("case", ["exists", "foreign", "cwd", "input_parent"])
@pytest.mark.parametrize("command", sorted(MEASURING))
def test_a_refused_out_fails_before_any_measuring(
    command, case, world, sandbox, tmp_path, monkeypatch, capsys
):
    """--out is checked right after the inputs are resolved: a bad one costs no tokenizing or scoring."""

    def measuring(*args, **kwargs):
        raise AssertionError(f"{command} started measuring before refusing --out")

    module, name = MEASURING[command]
    monkeypatch.setattr(importlib.import_module(module), name, measuring)
    if case == "exists":
        out, folder, reason, flags = tmp_path / "old", tmp_path / "old", "already exists; choose another", []
        out.mkdir()
        write_marker(out, command)  # written by the command itself: refused only for lack of --overwrite
    else:
        (out, folder, reason), flags = _case_out(case, command, world, sandbox, tmp_path), ["--overwrite"]
    before = _snapshot(folder)
    code, err = run_cli(monkeypatch, capsys, [*_argv(command, world, out), *flags])
    _assert_refused(code, err, reason)
    assert _snapshot(folder) == before
