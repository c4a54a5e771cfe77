"""Local vs Ray executor for `curate` on the same corpus (1x and 10x the shipped samples): wall time,
CPU seconds per MB, bytes shuffled for dedup, peak memory per worker, and the CPU-hours and cluster
size projected for 1 TB and 10 TB of raw text from the measured per-MB costs.

    .venv/bin/python benchmarks/bench_scale.py               # the four samples, 1x and 10x
    .venv/bin/python benchmarks/bench_scale.py --docs 40     # first 40 documents per sample (quick)

The 10x corpus is every sample file 10 times, copy k with every 50th word changed (a crawl's
near-duplicates: each copy is a separate file and a separate Ray task). The Ray cluster is the
tests' one: a head and a worker node as `ray start` processes on 127.0.0.1, 1 CPU each, against
the local executor with 2 workers. Each run is a fresh child process (curate library, not the CLI).
CPU seconds: local = the child and its pool workers (fork start, reaped); Ray = the driver child
plus every process of the cluster (raylets, GCS, `ray::` workers: /proc deltas per pid).
Peak memory per worker: local = the largest reaped child (ru_maxrss); Ray = the largest VmHWM of a
`ray::` worker process. Ray's numbers are taken while the driver is still connected (before its
workers are ended). Prints a table and one final JSON line.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from domainlm.assets import SAMPLE_DOMAINS, sample_corpus  # noqa: E402
from tests.ray.conftest import _free_port, _start_node, _stop  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")
NODE_CORES, TARGET_HOURS = 64, 24.0  # projection assumptions: 64-core nodes, a one-day run


def _child(args: dict) -> None:
    """One curation in a fresh process; prints its numbers as JSON."""
    import resource

    from domainlm.corpus.curate import CurateConfig, curate, parse_corpus_args, ray_executor

    ray, before = None, {}
    if args["executor"] == "ray":
        # Connected here, so curate keeps this connection and the job's workers stay alive until
        # the after-snapshot: Ray ends them when the driver leaves, and their CPU time with them.
        import ray

        ray.init(address=args["address"], log_to_driver=False)
        before = _snapshot(args["roots"])
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = curate(
            parse_corpus_args(args["corpora"]), CurateConfig(), out=Path(tmp) / "out", workers=args["workers"],
            executor=args["executor"], ray_address=args["address"],
        )  # fmt: skip
        wall = time.perf_counter() - start
    cluster_cpu_s = worker_peak_mb = 0.0
    if ray is not None:
        after = _snapshot(args["roots"])
        cluster_cpu_s = sum(cpu - before.get(pid, (0.0, 0.0))[0] for pid, (cpu, _) in after.items())
        worker_peak_mb = max((peak for _, peak in after.values()), default=0.0)
        ray.shutdown()
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({
        "wall_s": wall,
        "driver_cpu_s": me.ru_utime + me.ru_stime,
        "children_cpu_s": kids.ru_utime + kids.ru_stime,
        "children_peak_mb": kids.ru_maxrss / 1024,
        "driver_peak_mb": me.ru_maxrss / 1024,
        "cluster_cpu_s": cluster_cpu_s,
        "ray_worker_peak_mb": worker_peak_mb,
        "mb": sum(i["read"]["bytes"] for i in result.report["inputs"]) / 1e6,
        "docs": result.report["totals"]["docs_in"],
        "kept": result.report["totals"]["docs_kept"],
        "shuffle_bytes": ray_executor.last_run.get("shuffle_bytes", 0) if args["executor"] == "ray" else 0,
        "tasks": ray_executor.last_run.get("tasks", 0) if args["executor"] == "ray" else 0,
    }))  # fmt: skip


def _snapshot(roots: list[int]) -> dict[int, tuple[float, float]]:
    """pid -> (CPU s incl. reaped children, peak RSS MB if a `ray::` worker else 0) over the node
    trees and every `ray::` process (workers, whatever their parent)."""
    pids = set(_tree(roots))
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(b"ray::"):
                    pids.add(int(entry.name))
            except OSError:
                continue
    return {pid: (_cpu_s([pid]), _worker_peak_mb([pid])) for pid in pids}


def _run(corpora: list[str], executor: str, address: str | None, workers: int, roots: list[int]) -> dict:
    args = {"corpora": corpora, "executor": executor, "address": address, "workers": workers, "roots": roots}
    env = {**os.environ, "DOMAINLM_MP_START": "fork", "PYTHONPATH": str(REPO)}
    code = f"import json, sys; sys.path.insert(0, {str(REPO)!r}); from benchmarks.bench_scale import _child; _child(json.loads(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        raise SystemExit(f"{executor} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _tree(roots: list[int]) -> list[int]:
    """The roots and all their live descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / CLK


def _worker_peak_mb(pids: list[int]) -> float:
    peak = 0.0
    for pid in pids:
        try:
            if not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::"):
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            continue
    return peak


def _corpus(root: Path, factor: int, docs: int) -> list[str]:
    """NAME=FOLDER per sample: `factor` files, copy k with every 50th word changed."""
    args = []
    for name in SAMPLE_DOMAINS:
        with gzip.open(sample_corpus(name), "rt", encoding="utf-8") as handle:
            texts = [json.loads(line)["text"] for n, line in enumerate(handle) if not docs or n < docs]
        folder = root / f"x{factor}" / name
        folder.mkdir(parents=True)
        for k in range(factor):
            lines = []
            for text in texts:
                words = text.split(" ")
                if k:
                    words = [f"v{k}w{i}" if i % 50 == 25 else w for i, w in enumerate(words)]
                lines.append(json.dumps({"text": " ".join(words)}) + "\n")
            (folder / f"part-{k:03d}.jsonl.gz").write_bytes(gzip.compress("".join(lines).encode(), mtime=0))
        args.append(f"{name}={folder}")
    return args


def _projection(cpu_s_per_mb: float, driver_s_per_mb: float, tb: float) -> dict:
    cpu_hours = cpu_s_per_mb * tb * 1e6 / 3600
    return {
        "tb": tb,
        "cpu_hours": round(cpu_hours),
        "nodes_for_a_day": math.ceil(cpu_hours / (NODE_CORES * TARGET_HOURS)),
        "driver_replay_hours": round(driver_s_per_mb * tb * 1e6 / 3600, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=0, help="documents per sample (0: all)")
    parser.add_argument("--factors", default="1,10")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        root = Path(tmp)
        port = _free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
        common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--object-store-memory=300000000",
                  f"--temp-dir={root / 'ray'}", "--disable-usage-stats"]  # fmt: skip
        nodes = [
            _start_node(
                ["--head", f"--port={port}", "--include-dashboard=false", *common], root / "head.log", env
            )
        ]
        try:
            nodes.append(_start_node([f"--address=127.0.0.1:{port}", *common], root / "worker.log", env))
            for factor in (int(f) for f in args.factors.split(",")):
                corpora = _corpus(root, factor, args.docs)
                roots = [n.pid for n in nodes]
                local = _run(corpora, "local", None, 2, roots)
                local["cpu_s"] = local["driver_cpu_s"] + local["children_cpu_s"]
                local["worker_peak_mb"] = local["children_peak_mb"]
                ray = _run(corpora, "ray", f"127.0.0.1:{port}", 1, roots)
                ray["cpu_s"] = ray["driver_cpu_s"] + ray["cluster_cpu_s"]
                ray["worker_peak_mb"] = ray["ray_worker_peak_mb"]
                for name, run in (("local", local), ("ray", ray)):
                    rows.append({"corpus": f"{factor}x", "executor": name, **run})
        finally:
            for node in reversed(nodes):
                _stop(node)
    _report(rows)


def _report(rows: list[dict]) -> None:
    print(f"{'corpus':>6} {'executor':>8} {'MB':>7} {'docs':>7} {'wall s':>7} {'CPU s':>7} {'CPU s/MB':>8} "
          f"{'shuffle MB':>10} {'worker peak MB':>14}")  # fmt: skip
    for r in rows:
        r["cpu_s_per_mb"] = r["cpu_s"] / r["mb"]
        print(f"{r['corpus']:>6} {r['executor']:>8} {r['mb']:7.1f} {r['docs']:7d} {r['wall_s']:7.1f} {r['cpu_s']:7.1f} "
              f"{r['cpu_s_per_mb']:8.2f} {r['shuffle_bytes'] / 1e6:10.2f} {r['worker_peak_mb']:14.0f}")  # fmt: skip
    last = {r["executor"]: r for r in rows if r["corpus"] == rows[-1]["corpus"]}
    overhead = last["ray"]["cpu_s"] / last["local"]["cpu_s"] - 1
    print(f"Ray CPU overhead on the {rows[-1]['corpus']} corpus: {overhead:+.0%} of local (target <= +25%)")
    driver_s_per_mb = last["ray"]["driver_cpu_s"] / last["ray"]["mb"]
    projections = [_projection(last["ray"]["cpu_s_per_mb"], driver_s_per_mb, tb) for tb in (1, 10)]
    for p in projections:
        print(f"{p['tb']:g} TB raw text: {p['cpu_hours']:,} CPU-hours at the measured Ray CPU s/MB; "
              f"{p['nodes_for_a_day']} nodes of {NODE_CORES} cores for a {TARGET_HOURS:g} h run; the driver's "
              f"sequential replay alone {p['driver_replay_hours']:,} h")  # fmt: skip
    print(
        "Assumptions: cost per MB stays what it was here (same duplicate rate and document mix; near-dedup"
        " pairs grow with cluster sizes), every core as busy as here, no I/O limit; measured on a shared"
        " 2-core machine, so CPU seconds, not wall time, are the comparable numbers."
    )
    print(json.dumps({"rows": rows, "ray_cpu_overhead": round(overhead, 3), "projections": projections}))


if __name__ == "__main__":
    main()
