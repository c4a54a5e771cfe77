"""The `domainlm` command: one thin Typer command per stage, one module per command.

This is the only place that catches DomainLMError: it prints one `error: ...` line to stderr and
exits 2. Anything else is a bug and keeps its traceback; `--debug` re-raises user errors too.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from domainlm.errors import DomainLMError

app = typer.Typer(
    name="domainlm",
    help="Domain-adaptive LLM pretraining: tokenizer -> vocab report -> curate -> mix -> plan -> pretrain -> eval.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# Each module defines `register(app)`; the order is the order of the pipeline in --help.
COMMAND_MODULES: list[str] = [
    "domainlm.cli.tokenizer",
    "domainlm.cli.vocab",
    "domainlm.cli.curate",
    "domainlm.cli.mix",
    "domainlm.cli.cache",
    "domainlm.cli.export",
    "domainlm.cli.plan",
    "domainlm.cli.pretrain",
    "domainlm.cli.eval",
    "domainlm.cli.mixsearch",
    "domainlm.cli.generate",
    "domainlm.cli.demo",
]

_state = {"debug": False}


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for user errors too."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level."),
) -> None:
    _state["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", stream=sys.stderr
    )
    # matplotlib logs its font-cache rebuild at INFO; on a fresh machine that line would precede
    # (and so hide) a command's one `error:` line.
    logging.getLogger("matplotlib").setLevel(logging.WARNING)


def _register_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)


def main() -> None:
    """Console-script entry point."""
    _register_commands()
    try:
        app()
    except DomainLMError as exc:
        if _state["debug"]:
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
