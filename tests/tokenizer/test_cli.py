from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from domainlm.cli import tokenizer as tokenizer_cli
from domainlm.cli import vocab as vocab_cli
from domainlm.errors import ConfigError


def _app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    tokenizer_cli.register(app)
    vocab_cli.register(app)
    return app


def test_vocab_report_json_and_files(hand_inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "rep"
    args = ["vocab", "report", "--tokenizer", f"small={hand_inputs['small']}", "--tokenizer", f"big={hand_inputs['big']}",
            "--corpus", f"hand={hand_inputs['corpus']}", "--terms", f"t={hand_inputs['terms']}", "--out", str(out),
            "--json"]  # fmt: skip
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [m["tokens"] for m in report["metrics"]] == [14, 11]
    assert (out / "report.html").is_file() and (out / "report.md").is_file()


def test_tokenizer_train_cli_with_ratios_and_specials(corpora_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "tok"
    args = ["tokenizer", "train", "--corpus", f"legal={corpora_dir / 'legal.jsonl'}",
            "--corpus", f"general={corpora_dir / 'general.jsonl'}", "--ratio", "legal=0.51", "--ratio", "general=0.49",
            "--vocab-size", "400", "--mask", "<mask>", "--sentinels", "2", "--set", "seed=3", "--out", str(out), "--json"]  # fmt: skip
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert [c["realized_ratio"] for c in manifest["corpora"]] == [0.51, 0.49]
    assert manifest["config"]["seed"] == 3 and manifest["sentinels"] == ["<extra_id_0>", "<extra_id_1>"]
    assert manifest["special_tokens"]["mask_token"] == {"token": "<mask>", "id": 4}


def test_train_yaml_config_paths_are_relative_to_the_file(corpora_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "l.jsonl").write_bytes((corpora_dir / "legal.jsonl").read_bytes())
    (tmp_path / "tok.yaml").write_text(
        "model: unigram\nvocab_size: 400\ncorpora:\n  - name: l\n    paths: [data/l.jsonl]\n"
    )
    cfg = tokenizer_cli.build_train_config(
        tmp_path / "tok.yaml", ["vocab_size=500"], [], [], {"special_tokens": {}}
    )
    assert cfg.model == "unigram" and cfg.vocab_size == 500
    assert cfg.corpora[0].paths == [str(tmp_path / "data" / "l.jsonl")]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "domainlm", *args], capture_output=True, text=True, timeout=120
    )


def test_bad_inputs_exit_2_with_one_line_error(tmp_path: Path, hand_inputs: dict[str, Path]) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    result = _run("vocab", "report", "--tokenizer", "gpt2", "--corpus", "legal", "--terms", f"e={empty}",
                  "--out", str(tmp_path / "r"))  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("error: --terms e=") and "the term list is empty" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_train_flag_errors_name_the_flag(corpora_dir: Path) -> None:
    legal = f"legal={corpora_dir / 'legal.jsonl'}"
    with pytest.raises(ConfigError, match="use at least 260"):
        tokenizer_cli.build_train_config(None, [], [legal], [], {"vocab_size": 100, "special_tokens": {}})
    with pytest.raises(ConfigError, match="--ratio fin=0.5: no corpus named 'fin'"):
        tokenizer_cli.build_train_config(None, [], [legal], ["fin=0.5"], {"special_tokens": {}})
    with pytest.raises(ConfigError, match="--ratio 'legal': expected NAME=SHARE"):
        tokenizer_cli.build_train_config(None, [], [legal], ["legal"], {"special_tokens": {}})
    with pytest.raises(ConfigError, match="no training corpus; pass --corpus"):
        tokenizer_cli.build_train_config(None, [], [], [], {"special_tokens": {}})


def test_train_yaml_shipped_names_and_set_paths_relative_to_the_cwd(
    corpora_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from domainlm.assets import sample_corpus

    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "tok.yaml").write_text("corpora:\n  - {name: l, paths: [legal, ../data/*.jsonl]}\n")
    monkeypatch.chdir(tmp_path / "conf")
    cfg = tokenizer_cli.build_train_config(Path("tok.yaml"), [], [], [], {"special_tokens": {}})
    assert cfg.corpora[0].paths == [str(sample_corpus("legal")), str(tmp_path / "data" / "*.jsonl")]
    monkeypatch.chdir(tmp_path)  # a --set is typed by the user: relative to the cwd
    sets = ["corpora=[{name: g, paths: [mine.jsonl, general]}]"]
    cfg = tokenizer_cli.build_train_config(
        tmp_path / "conf" / "tok.yaml", sets, [], [], {"special_tokens": {}}
    )
    assert cfg.corpora[0].paths == [str(tmp_path / "mine.jsonl"), str(sample_corpus("general"))]
