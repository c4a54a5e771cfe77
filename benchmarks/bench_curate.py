"""Curation throughput and memory: documents/s, MB/s and peak RSS of `domainlm curate` on the shipped
corpora, and on the legal corpus grown 10x with injected duplicates (verbatim and few-words-changed
copies), showing how many of the injected copies are removed.

    .venv/bin/python benchmarks/bench_curate.py              # all cases, best of 2
    .venv/bin/python benchmarks/bench_curate.py --repeats 1  # quicker

Every case runs in a fresh child process (the curate library only, not the CLI, so unrelated imports
do not inflate memory); peak RSS is the largest process of the run, from wait4. The baseline for the
parallel numbers is the same run with one worker, measured in the same invocation. CPU seconds
(the run plus its workers) are reported beside wall time because a shared machine inflates the
latter. Prints a table and one final JSON line.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from domainlm.assets import SAMPLE_DOMAINS, sample_corpus  # noqa: E402

INJECT_FACTOR = 10  # the corpus grows to 10x: every document plus 9 copies


def _child(args: dict) -> None:
    """Run one curation and print its numbers as JSON (executed in a fresh process)."""
    from domainlm.corpus.curate import CurateConfig, curate, parse_corpus_args

    with tempfile.TemporaryDirectory() as tmp:
        result = curate(
            parse_corpus_args(args["corpora"]),
            CurateConfig(),
            out=Path(tmp) / "out",
            workers=args["workers"],
            shards=args["shards"],
        )
    stages = {s["stage"]: s for s in result.report["stages"]}
    print(
        json.dumps(
            {
                **result.run_info,
                "docs_in": result.report["totals"]["docs_in"],
                "docs_kept": result.report["totals"]["docs_kept"],
                "mb": sum(i["read"]["bytes"] for i in result.report["inputs"]) / 1e6,
                "exact_removed": stages["exact_dedup"]["docs_removed"],
                "near_removed": stages["near_dedup"]["docs_removed"],
                "filtered": stages["filters"]["docs_removed"],
            }
        )
    )


def run_case(corpora: list[str], workers: int, shards: int) -> dict:
    """One child run; returns its JSON plus the peak RSS in MB."""
    spec = json.dumps({"corpora": corpora, "workers": workers, "shards": shards})
    env = {**os.environ, "DOMAINLM_MP_START": "fork"}  # workers are then children of the measured run
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", spec], stdout=subprocess.PIPE, text=True, env=env
    )
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"child run failed: {spec}")
    # CPU seconds of the run and every worker it reaped: unlike wall time, not inflated when other
    # jobs share the cores, so MB per CPU-second is the comparable throughput.
    cpu = usage.ru_utime + usage.ru_stime
    return {**json.loads(output), "peak_rss_mb": usage.ru_maxrss / 1024, "cpu_s": round(cpu, 2)}


def best_of(repeats: int, corpora: list[str], workers: int, shards: int = 0) -> dict:
    runs = [run_case(corpora, workers, shards) for _ in range(repeats)]
    return min(runs, key=lambda r: r["seconds"])


def inject_duplicates(source: Path, out: Path, seed: int = 0) -> tuple[Path, int]:
    """source x INJECT_FACTOR: each document plus copies, alternately verbatim and with 3 words
    changed and whitespace re-flowed (caught only by near dedup); shuffled with a fixed seed."""
    rng = random.Random(seed)
    with gzip.open(source, "rt", encoding="utf-8") as handle:
        texts = [json.loads(line)["text"] for line in handle]
    docs = list(texts)
    for copy in range(1, INJECT_FACTOR):
        for text in texts:
            if copy % 2:
                docs.append(text)
                continue
            words = text.split()
            for _ in range(3):
                words[rng.randrange(len(words))] = f"edit{rng.randrange(1000)}"
            docs.append(" ".join(words))
    rng.shuffle(docs)
    with gzip.open(out, "wt", encoding="utf-8") as handle:
        for text in docs:
            handle.write(json.dumps({"text": text}) + "\n")
    return out, len(docs) - len(texts)


def _row(name: str, r: dict) -> str:
    kept = r["docs_kept"] / r["docs_in"]
    return (
        f"| {name} | {r['workers']} | {r['shards']} | {r['docs_in']:,} | {r['mb']:.1f} | {r['seconds']:.1f} | "
        f"{r['docs_per_s']:,.0f} | {r['mb_per_s']:.2f} | {r['cpu_s']:.1f} | {r['mb'] / r['cpu_s']:.2f} | "
        f"{kept:.1%} | {r['exact_removed']:,} | "
        f"{r['near_removed']:,} | {r['filtered']:,} | {r['peak_rss_mb']:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs per case; the fastest is reported")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(json.loads(args.child))
        return
    results: dict[str, dict] = {}
    for domain in SAMPLE_DOMAINS:
        results[domain] = best_of(args.repeats, [str(sample_corpus(domain))], args.workers)
    every = [str(sample_corpus(d)) for d in SAMPLE_DOMAINS]
    results["all 4 (1 worker)"] = best_of(args.repeats, every, 1)
    results["all 4"] = best_of(args.repeats, every, args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        grown, injected = inject_duplicates(sample_corpus("legal"), Path(tmp) / "legal.jsonl.gz")
        results["legal x10 + dups"] = best_of(args.repeats, [str(grown)], args.workers)
        results["legal x10 + dups, sharded"] = best_of(args.repeats, [str(grown)], args.workers, shards=2)
    for name, r in results.items():
        r["workers"] = 1 if "1 worker" in name else args.workers
        r["shards"] = 2 if "sharded" in name else 0
    print(
        "| corpus | workers | shards | docs | MB | s | docs/s | MB/s | CPU s | MB/CPU-s | kept | exact dups | "
        "near dups | filtered | peak RSS MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(_row(name, r))
    base, grown_run = results["legal"], results["legal x10 + dups"]
    extra_kept = grown_run["docs_kept"] - base["docs_kept"]
    caught = 1 - extra_kept / injected
    speedup = results["all 4 (1 worker)"]["seconds"] / results["all 4"]["seconds"]
    print(
        f"\ninjected {injected:,} copies into legal; kept {grown_run['docs_kept']:,} docs vs {base['docs_kept']:,} "
        f"without them: {caught:.1%} of the copies removed. {args.workers} workers vs 1: {speedup:.2f}x."
    )
    summary = {
        "results": results,
        "injected": injected,
        "injected_removed_fraction": round(caught, 4),
        "speedup_workers": round(speedup, 3),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
