"""Dependencies follow the pipeline: corpus -> tokenizer -> mix -> plan -> pretrain -> eval.

Every module under domainlm/ is parsed (imports inside functions count: a deferred import is still a
dependency), mapped to its stage, and may import only its own stage, an earlier one, or the shared
low-level modules below every stage. cli, demo and testing sit on top and may import any stage.
"""

from __future__ import annotations

import ast
from pathlib import Path

import domainlm

PACKAGE = Path(domainlm.__file__).parent

# Rank of each top-level part of domainlm: a module may import ranks <= its own.
SHARED = (
    "errors", "config", "outputs", "progress", "assets", "units", "losses", "naming", "architectures", "storage", "machine",
    "executors",
)  # fmt: skip
PIPELINE = ("corpus", "tokenizer", "mix", "plan", "pretrain", "eval")
ON_TOP = ("testing", "mixsearch", "demo", "cli", "__main__")
RANK = {name: 0 for name in ("", *SHARED)} | {
    name: rank for rank, name in enumerate((*PIPELINE, *ON_TOP), start=1)
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    """'domainlm.plan.recipe' -> 'plan'; 'domainlm' -> ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Every domainlm module `source` imports, anywhere in the file (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if base == "domainlm")
    return {name for name in found if name == "domainlm" or name.startswith("domainlm.")}


def violations(module: str, imports: set[str]) -> list[str]:
    """'importer -> imported' for each import that points later in the pipeline (or at an unknown part)."""
    bad = []
    for target in sorted(imports):
        own, other = part_of(module), part_of(target)
        unknown = [p for p in (own, other) if p not in RANK]
        if unknown:
            bad.append(f"{module} -> {target}: place domainlm.{unknown[0]} in RANK of tests/test_imports.py")
        elif RANK[other] > RANK[own]:
            bad.append(f"{module} ({own or 'shared'}) -> {target} ({other}): against the pipeline")
    return bad


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        graph[module] = imported_modules(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")
    return graph


def test_every_import_follows_the_pipeline():
    graph = import_graph()
    assert len(graph) > 50 and "domainlm.plan.recipe" in graph
    problems = [line for module, imports in graph.items() for line in violations(module, imports)]
    assert problems == []


def test_the_check_catches_a_stage_importing_a_later_one():
    # Before: plan/recipe.py validated --write-recipe with the pretrain schema, and pretrain/loop.py
    # summarized losses with eval's metrics.
    inside_function = "def write():\n    from domainlm.pretrain.config import recipe_from_dict\n"
    imports = imported_modules(inside_function, "domainlm.plan.recipe", is_package=False)
    assert violations("domainlm.plan.recipe", imports) == [
        "domainlm.plan.recipe (plan) -> domainlm.pretrain.config (pretrain): against the pipeline"
    ]
    assert violations("domainlm.pretrain.loop", {"domainlm.eval.metrics"}) == [
        "domainlm.pretrain.loop (pretrain) -> domainlm.eval.metrics (eval): against the pipeline"
    ]
    relative = imported_modules("from ..eval import metrics\n", "domainlm.pretrain.loop", is_package=False)
    assert relative == {"domainlm.eval"} and violations("domainlm.pretrain.loop", relative)
    assert violations("domainlm.errors", {"domainlm.mix.manifest"})  # shared modules import no stage
    assert violations("domainlm.eval.data", {"domainlm.mix.manifest", "domainlm.losses"}) == []
