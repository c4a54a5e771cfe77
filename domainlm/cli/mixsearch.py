"""`domainlm mixsearch SEARCH.yaml`: choose a mixture by measurement (proxies, a mixing law, one check run)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from domainlm.assets import shipped_search
from domainlm.cli.options import Json, Overwrite, out_option
from domainlm.config import resolve_cli_path
from domainlm.outputs import to_json
from domainlm.progress import console


def mixsearch_command(
    search: Annotated[
        Path,
        typer.Argument(
            help="Search YAML (sources, target, constraint, proxy, budget), or a shipped one: finance."
        ),
    ],
    out: Annotated[
        Path | None, out_option("Output folder (resumable); default mixsearch/<YAML name>.")
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a YAML value, e.g. --set budget=12.")
    ] = None,
    overwrite: Overwrite = False,
    as_json: Json = False,
) -> None:
    """Train a proxy per sampled mixture, fit a data-mixing law per domain, recommend the best mixture
    under the constraint, train it once, and write recommended.yaml + report.html."""
    from domainlm.mixsearch.search import search as run

    path = resolve_cli_path(search)
    if not path.exists() and shipped_search(str(search)) is not None:
        path = shipped_search(str(search))
    folder = resolve_cli_path(out) if out is not None else Path("mixsearch") / path.stem
    result = run(path, folder, overrides or [], overwrite=overwrite)
    report = result.report.parent / "report.json"
    if as_json:
        print(to_json({"report": str(report), **_summary(report)}), end="")
        return
    for line in (result.report.parent / "report.md").read_text(encoding="utf-8").splitlines()[4:]:
        if line.startswith("- "):
            console.print(line[2:], highlight=False)
    console.print(f"recommended mix: {result.report.parent / 'recommended.yaml'}")
    console.print(f"report: {result.report}")


def _summary(report: Path) -> dict:
    import json

    data = json.loads(report.read_text(encoding="utf-8"))
    return {key: data[key] for key in ("recommendation", "fit", "measured")}


def register(app: typer.Typer) -> None:
    app.command("mixsearch")(mixsearch_command)
