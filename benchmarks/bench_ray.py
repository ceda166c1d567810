#!/usr/bin/env python3
"""``bpetok.ray.pack`` with 1 and 2 worker processes against ``bpetok pack --partition-size`` on the
same inputs, and the fixed costs of Ray: per run (``ray.init`` of a local cluster, planning, the
manifest) and per task (an empty task's round trip; a partition of one tiny file).

Run from anywhere (see benchmarks/README.md)::

    python3 benchmarks/bench_ray.py --repeat 3                      # about 3-4 minutes
    python3 benchmarks/bench_ray.py --repeat 3 --json /tmp/bench_ray.json

Inputs: the real-text corpora of ``$BPETOK_CORPORA`` (en, code, ja, zh, multi JSONL; built by
``../shared/corpora/build.py`` and ``benchmarks/build_corpora.py``). Every output is compared byte
for byte with the single-machine one (the script exits non-zero if one differs). Figures are
medians of ``--repeat`` runs; MB are 10**6 bytes of JSONL input. The ``ray`` figures exclude
``ray.init`` (a fixed cost of the run, given on its own); the command-line figures include the
interpreter's start, as a user sees them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

MB = 1_000_000
SETS = ("en", "code", "ja", "zh", "multi")
OPTIONS: dict[str, Any] = {"seq_len": 4096, "window": 4096}
SCALING_TARGET = 1.6  # 2 worker processes / 1


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def tree(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def cli_pack(inputs: list[Path], out: Path, partition_size: str, threads: int) -> float:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "bpetok", "pack", *map(str, inputs), "-o", str(out), "--quiet"]
    cmd += ["--seq-len", str(OPTIONS["seq_len"]), "--window", str(OPTIONS["window"])]
    cmd += ["--partition-size", partition_size, "--threads", str(threads)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpora", default=os.environ.get("BPETOK_CORPORA", "/tmp/bpetok-corpora"))
    parser.add_argument("--partition-size", default="8MiB")
    parser.add_argument(
        "--copies",
        type=int,
        default=4,
        help="read each corpus this many times (as distinct files; default 4)",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", default=None, help="scratch directory (default: a temporary one)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()

    import bpetok
    import bpetok.ray
    import ray

    corpora = Path(args.corpora)
    found = [corpora / f"{name}.jsonl" for name in SETS if (corpora / f"{name}.jsonl").exists()]
    if not found:
        log(f"no corpora in {corpora}: build them first (see the docstring)")
        return 2
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_ray-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "inputs").mkdir(exist_ok=True)
    inputs = []
    for k in range(args.copies):
        for path in found:
            link = work / "inputs" / f"{path.stem}-{k}.jsonl"
            if not link.exists():
                link.symlink_to(path)
            inputs.append(link)
    size = sum(p.stat().st_size for p in inputs)
    log(f"inputs: {len(inputs)} files, {size / MB:.1f} MB; partition size {args.partition_size}")

    figures: dict[str, Any] = {
        "input_mb": size / MB,
        "partition_size": args.partition_size,
        "cpus": os.cpu_count(),
    }
    reference = work / "cli-1"
    cli = {}
    for threads in (1, 2):
        times = [
            cli_pack(inputs, work / f"cli-{threads}", args.partition_size, threads)
            for _ in range(args.repeat)
        ]
        cli[threads] = statistics.median(times)
        log(f"bpetok pack --partition-size, {threads} thread(s): {cli[threads]:.2f} s")
    expected = tree(reference)
    partitions = len(json.loads((reference / "manifest.json").read_text())["partitions"])
    figures["partitions"] = partitions

    ray_times: dict[int | str, float] = {}
    init_times: dict[int | str, float] = {}
    task_costs: dict[int | str, dict[str, float]] = {}
    tiny = work / "tiny.jsonl"
    tiny.write_text(json.dumps({"text": "a tiny document"}) + "\n")
    ok = True
    all_cpus = os.sched_getaffinity(0)
    for workers in (1, "1-pinned", 2):
        # "1-pinned": the whole local cluster on one core (its processes inherit the affinity), so
        # that one worker process has one core and no more.
        os.sched_setaffinity(0, {min(all_cpus)} if workers == "1-pinned" else all_cpus)
        cpus = 2 if workers == 2 else 1
        start = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        init_times[workers] = time.perf_counter() - start

        @ray.remote
        def empty() -> int:
            return 0

        ray.get([empty.remote() for _ in range(cpus * 4)])  # start the worker processes
        rounds = []
        for _ in range(50):
            t = time.perf_counter()
            ray.get(empty.remote())
            rounds.append(time.perf_counter() - t)
        # Warm the workers' tokenizer cache, then time a whole run of one tiny partition.
        bpetok.ray.pack(
            [tiny], work / "tiny-out", partition_size="1MiB", overwrite=True, progress=False, **OPTIONS
        )
        tiny_runs = []
        for _ in range(5):
            t = time.perf_counter()
            bpetok.ray.pack(
                [tiny], work / "tiny-out", partition_size="1MiB", overwrite=True, progress=False, **OPTIONS
            )
            tiny_runs.append(time.perf_counter() - t)
        task_costs[workers] = {
            "empty_task_ms": statistics.median(rounds) * 1000,
            "tiny_run_ms": statistics.median(tiny_runs) * 1000,
        }
        times = []
        for _ in range(args.repeat):
            out = work / f"ray-{workers}"
            shutil.rmtree(out, ignore_errors=True)
            t = time.perf_counter()
            bpetok.ray.pack(inputs, out, partition_size=args.partition_size, progress=False, **OPTIONS)
            times.append(time.perf_counter() - t)
            if tree(out) != expected:
                log(f"ray with {workers} worker(s): the output differs from bpetok pack --partition-size")
                ok = False
        ray_times[workers] = statistics.median(times)
        log(f"bpetok.ray.pack, {workers} worker process(es): {ray_times[workers]:.2f} s")
        ray.shutdown()
    os.sched_setaffinity(0, all_cpus)

    scaling = ray_times[1] / ray_times[2]
    per_core = ray_times["1-pinned"] / ray_times[2]
    figures.update(
        {
            "cli_seconds": cli,
            "ray_seconds": ray_times,
            "ray_init_seconds": init_times,
            "task_costs": task_costs,
            "scaling_2_over_1": scaling,
            "scaling_2_over_1_pinned": per_core,
            "identical": ok,
        }
    )
    rows = [
        ("bpetok pack --partition-size, 1 thread", cli[1]),
        ("bpetok pack --partition-size, 2 threads", cli[2]),
        ("bpetok.ray.pack, 1 worker process", ray_times[1]),
        ("bpetok.ray.pack, 1 worker process on 1 core", ray_times["1-pinned"]),
        ("bpetok.ray.pack, 2 worker processes", ray_times[2]),
    ]
    print(
        f"\n{size / MB:.1f} MB of JSONL ({', '.join(p.stem for p in found)}, x{args.copies}), "
        f"{partitions} partitions of "
        f"{args.partition_size}, seq_len {OPTIONS['seq_len']}, medians of {args.repeat}"
    )
    print(f"{'':44} {'seconds':>8} {'MB/s':>7} {'vs CLI 1 thread':>16}")
    for name, seconds in rows:
        print(f"{name:44} {seconds:8.2f} {size / MB / seconds:7.1f} {cli[1] / seconds:15.2f}x")
    verdict = "meets" if scaling >= SCALING_TARGET else "MISSES"
    print(f"\n2 worker processes / 1: {scaling:.2f}x (target {SCALING_TARGET}x: {verdict})")
    verdict = "meets" if per_core >= SCALING_TARGET else "MISSES"
    print(
        f"2 worker processes on 2 cores / 1 on 1 core: {per_core:.2f}x (target {SCALING_TARGET}x: {verdict});"
        " "
        "an unpinned worker's task also uses part of the other core (its reading thread)"
    )
    for workers in (1, "1-pinned", 2):
        c = task_costs[workers]
        print(
            f"fixed costs, {workers} worker(s): ray.init of a local cluster {init_times[workers]:.2f} s; "
            f"empty task round trip {c['empty_task_ms']:.1f} ms; whole run of one tiny partition "
            f"(plan, task, manifest) {c['tiny_run_ms']:.0f} ms"
        )
    print("outputs identical to bpetok pack --partition-size:", "yes" if ok else "NO")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str) + "\n")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
