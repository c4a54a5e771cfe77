"""Run the demo: every stage's command in order ((a), (b), (c) and the untrained baseline), then report.html."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from domainlm.demo.adaptation import ModelRow, model_rows
from domainlm.demo.report import write_report
from domainlm.demo.steps import DemoSettings, Step, build_steps, paths, run_step
from domainlm.errors import ConfigError
from domainlm.outputs import prepare_run_dir, write_json

log = logging.getLogger(__name__)

SETTINGS = "demo.json"  # the settings of the run, for the record


@dataclass
class DemoResult:
    report: Path
    steps: list[Step]
    models: list[ModelRow]  # untrained, (a), (b), (c)

    @property
    def bits_per_byte(self) -> dict[str, dict[str, float]]:
        """model -> domain -> held-out bits per byte."""
        return {row.name: row.bits_per_byte for row in self.models}

    def as_dict(self) -> dict:
        return {
            "report": str(self.report),
            "bits_per_byte": self.bits_per_byte,
            "models": [row.as_dict() for row in self.models],
            "seconds": round(sum(s.seconds for s in self.steps), 1),
            "cpu_seconds": round(sum(s.cpu_seconds for s in self.steps), 1),
            "steps": [
                {
                    "name": s.name,
                    "command": s.shell(),
                    "seconds": round(s.seconds, 2),
                    "cpu_seconds": round(s.cpu_seconds, 2),
                }
                for s in self.steps
            ],  # fmt: skip
        }


def prepare_out(out: Path, overwrite: bool) -> Path:
    """A fresh, marked demo folder; --overwrite replaces only a folder that domainlm wrote."""
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out}: already exists; pass --overwrite or choose another --out")
    return prepare_run_dir(out, command="demo", overwrite=overwrite)


def _bits_per_byte(eval_report: Path) -> dict[str, dict[str, float]]:
    table = json.loads(eval_report.read_text(encoding="utf-8"))["table"]
    return {
        model: dict(zip(table["columns"], row, strict=True))
        for model, row in zip(table["rows"], table["bits_per_byte"], strict=True)
    }


def _sample_text(samples_json: Path) -> str:
    samples = json.loads(samples_json.read_text(encoding="utf-8"))
    return "\n\n".join(s["prompt"] + s["text"] for s in samples)


def run_demo(settings: DemoSettings, overwrite: bool = False) -> DemoResult:
    """Tokenizer -> coverage -> mixes -> plan -> pretrain (a)+(b) -> continue (c) -> export-init -> eval ->
    sample -> report.html."""
    prepare_out(settings.out, overwrite)
    write_json(settings.out / SETTINGS, {k: str(v) for k, v in asdict(settings).items()})
    p = paths(settings)
    steps = build_steps(settings)
    for step in steps:
        log.info("\n== %s\n$ %s", step.title, step.shell())
        run_step(step)
    rows = model_rows(settings.out, _bits_per_byte(p["eval"] / "report.json"))
    report = write_report(settings.out, steps, _sample_text(p["samples"]), rows)
    return DemoResult(report=report, steps=steps, models=rows)
