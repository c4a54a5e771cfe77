"""Stage 6: models + per-domain held-out text -> loss, perplexity, bits per byte.

Python API (what `domainlm eval` and the demo call):
    domains = load_domains([mix_dir])                      # or ["legal", "notes=path.jsonl"]
    report = evaluate(["trained=DIR", "init=DIR"], domains, EvalSettings(max_length=256))
    write_report(report, out_dir)                          # report.json, report.md, bits_per_byte.png
    report.table().values                                  # bits per byte, [model][domain]
"""

from domainlm.eval.data import EvalDomain, load_domains
from domainlm.eval.evaluate import EvalSettings, evaluate
from domainlm.eval.report import EvalReport, EvalResult, write_report

__all__ = [
    "EvalDomain",
    "EvalReport",
    "EvalResult",
    "EvalSettings",
    "evaluate",
    "load_domains",
    "write_report",
]
