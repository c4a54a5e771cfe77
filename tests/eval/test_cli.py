import json
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from domainlm.cli import eval as eval_cli
from domainlm.cli import generate as generate_cli
from domainlm.errors import ConfigError

from .conftest import TEXTS, write_jsonl_gz


def _app():
    app = typer.Typer()
    app.callback()(lambda: None)  # keep `eval` a subcommand
    eval_cli.register(app)
    generate_cli.register(app)
    return app


def test_eval_json_prints_only_the_report(tmp_path, llama_dir):
    out = tmp_path / "r"
    corpus = write_jsonl_gz(tmp_path / "c.jsonl.gz", TEXTS, "legal")
    args = ["eval", "--model", f"tiny={llama_dir}", "--data", f"legal={corpus}", "--max-length", "32",
            "--out", str(out), "--json", "--device", "cpu"]  # fmt: skip
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["table"]["rows"] == ["tiny"] and report["table"]["columns"] == ["legal"]
    assert json.loads((out / "report.json").read_text()) == report


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--batch-size", "0"], "--batch-size 0"),
        (["--data", "no-such-corpus"], "not a shipped sample"),
        (["--model", "/no/such/dir"], "no config.json"),
    ],
)
def test_bad_inputs_fail_before_any_work(tmp_path, llama_dir, args, match):
    base = {"--model": f"tiny={llama_dir}", "--data": "legal", "--out": str(tmp_path / "r")}
    flags = dict(base, **dict(zip(args[::2], args[1::2], strict=True)))
    result = CliRunner().invoke(_app(), ["eval", *[x for kv in flags.items() for x in kv]])
    assert isinstance(result.exception, ConfigError)
    assert match in str(result.exception)
    assert not (tmp_path / "r").exists()


def test_bad_input_exits_2_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "domainlm", "eval", "--model", str(tmp_path), "--data", "legal", "--out",
         str(tmp_path / "r")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: --model")
    assert "no config.json" in result.stderr and "Traceback" not in result.stderr
