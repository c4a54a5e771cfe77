"""Run `domainlm ARGV` inside a test process, the way the console script does."""

from __future__ import annotations

import importlib
import sys

import pytest

from domainlm import cli


def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, argv: list[str]
) -> tuple[int, str]:
    """`domainlm ARGV` through cli.main: its exit code and stderr (one `error:` line for user errors)."""
    # Other test modules register single commands (plan) on the shared app: register all of them afresh.
    monkeypatch.setattr(cli.app, "registered_commands", [])
    monkeypatch.setattr(cli.app, "registered_groups", [])
    for name in cli.COMMAND_MODULES:  # not cli._register_commands: a second call finds it patched out
        importlib.import_module(name).register(cli.app)
    monkeypatch.setattr(cli, "_register_commands", lambda: None)
    monkeypatch.setattr(sys, "argv", ["domainlm", *argv])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    return exit_info.value.code, capsys.readouterr().err
