import subprocess
import sys

import pytest
import typer

from domainlm import cli
from domainlm.errors import ConfigError


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "domainlm", *args], capture_output=True, text=True, timeout=120
    )


def test_help_lists_the_pipeline():
    result = _run("--help")
    assert result.returncode == 0
    for name in cli.COMMAND_MODULES:
        assert name.rsplit(".", 1)[1] in result.stdout


def test_unknown_command_exits_2_without_traceback():
    result = _run("no-such-command")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_user_error_is_one_line_and_debug_reraises(monkeypatch, capsys):
    app = typer.Typer()

    @app.command()
    def boom() -> None:
        raise ConfigError("train.lrr: unknown key")

    @app.callback()
    def _root(debug: bool = typer.Option(False, "--debug")) -> None:
        cli._state["debug"] = debug

    monkeypatch.setattr(cli, "app", app)
    monkeypatch.setattr(cli, "_register_commands", lambda: None)
    monkeypatch.setattr(sys, "argv", ["domainlm", "boom"])
    cli._state["debug"] = False
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: train.lrr: unknown key\n"
    monkeypatch.setattr(sys, "argv", ["domainlm", "--debug", "boom"])
    with pytest.raises(ConfigError):
        cli.main()
    cli._state["debug"] = False
