#!/usr/bin/env python3
"""How much one encoding thread slows down when the machine's other CPU is busy.

Run from anywhere (see benchmarks/README.md)::

    python3 benchmarks/bench_neighbours.py --corpora /tmp/corpora --cycles 8

Two threads can only be twice as fast as one if a thread runs as fast beside a busy CPU as beside
an idle one. This script measures that, per corpus, on the warm sample that ``bench_peers.py`` draws
(the same seeded ``--mb`` MB of whole documents). One process encodes the sample again and again
with ``encode_batch_to_numpy(docs, num_threads=1)`` on the first CPU it may use, while the second
CPU is in turn:

- ``idle``;
- running a **compute-only** loop: a Python integer loop in its own process, which touches no
  memory beyond a few cache lines (nothing that bpetok's tables or text could compete for);
- running **bpetok**: a second process encoding the same sample on one thread, as the second of
  two threads would.

and, in the same cycles, the process encodes the sample on both CPUs (``num_threads=2``). The four
conditions take turns in each cycle (the order rotated from cycle to cycle), so that the machine's
slow and fast phases fall on all of them; figures are medians over every pass of every cycle.

With ``--fresh`` it measures instead what ``bench_peers.py``'s fresh and warm figures measure, the
two thread counts taking turns in the same way (the machine's phases still move their ratio, as
they move a thread's speed beside a busy CPU): each pass gets a new tokenizer (loaded from the
embedded model's bytes, so with empty caches, as in a fresh process) and encodes the cold set
(timed: "fresh"), the warm-up set (not timed) and the warm set (timed: "warm"), on one thread (on
the first CPU) or on two, the two taking turns round after round. What a tokenizer in a new
process has that this one has not: a new allocator and pages the process never touched.

The **control** row times the compute-only loop itself on the first CPU, alone and beside a copy of
itself on the second: about 1.00 when the two CPUs do not slow each other down for work that
shares no memory.

Reading it: ``beside X`` is the one thread's time beside X over its time beside an idle CPU. Two
threads in one process cannot be more than ``2 / (beside bpetok)`` times as fast as one, and
``2 / (beside compute)`` is what the machine leaves of 2x before any memory is shared.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_peers import SETS, draw_sets, log, utf8_len

SPIN_STEPS = 200_000


def spin(steps: int) -> int:
    """An integer loop that touches no memory beyond the interpreter's own few cache lines."""
    x = 1
    for _ in range(steps):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    return x


def neighbour(kind: str, docs_path: str, cpu: int) -> None:
    """The process on the second CPU: prints "ready" once warm, then works until it is killed."""
    os.sched_setaffinity(0, {cpu})
    if kind == "compute":
        spin(SPIN_STEPS)
        print("ready", flush=True)
        while True:
            spin(SPIN_STEPS)
    import bpetok

    tok = bpetok.Tokenizer.default()
    with open(docs_path, encoding="utf-8") as f:
        docs = json.load(f)
    tok.encode_batch_to_numpy(docs, num_threads=1)
    print("ready", flush=True)
    while True:
        tok.encode_batch_to_numpy(docs, num_threads=1)


class Neighbour:
    """A process on CPU ``cpu`` doing ``kind`` of work, stopped (SIGSTOP) but while ``with`` it."""

    def __init__(self, kind: str, docs_path: str, cpu: int) -> None:
        cmd = [sys.executable, __file__, "--_neighbour", kind, "--_docs", docs_path, "--_cpu", str(cpu)]
        self.kind = kind
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, text=True, env=dict(os.environ, OPENBLAS_NUM_THREADS="1")
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the {kind} neighbour did not start (exit {self.proc.wait()})")
        self.proc.send_signal(signal.SIGSTOP)

    def __enter__(self) -> Neighbour:
        self.proc.send_signal(signal.SIGCONT)
        time.sleep(0.002)  # running again before the pass starts
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def interleaved(conditions, run, rounds: int, cpus: tuple[int, int]) -> dict[str, list[float]]:
    """Milliseconds of ``run(threads)`` under each condition, one pass per condition per round,
    the order rotated from round to round (so the machine's slow and fast phases fall on all of
    them). ``conditions`` maps a name to (threads, the neighbour to resume or None)."""
    names = list(conditions)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            threads, beside = conditions[name]
            os.sched_setaffinity(0, set(cpus) if threads == 2 else {cpus[0]})
            with beside if beside is not None else contextlib.nullcontext():
                t = time.perf_counter()
                run(threads)
                times[name].append((time.perf_counter() - t) * 1e3)
    os.sched_setaffinity(0, set(cpus))
    return times


def fresh_passes(tok_bytes: bytes, sets: dict[str, list[str]], rounds: int, cpus: tuple[int, int]):
    """Per round, one and two threads in turn (the order alternated): a new tokenizer, then the
    cold set (timed), the warm-up set and the warm set (timed). Milliseconds by thread count:
    [(cold, warm), ...], one pair per round."""
    import bpetok

    times: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    for r in range(rounds):
        for threads in (1, 2) if r % 2 == 0 else (2, 1):
            os.sched_setaffinity(0, set(cpus) if threads == 2 else {cpus[0]})
            tok = bpetok.Tokenizer.from_bytes(tok_bytes)
            t = time.perf_counter()
            tok.encode_batch_to_numpy(sets["cold"], num_threads=threads)
            cold = (time.perf_counter() - t) * 1e3
            tok.encode_batch_to_numpy(sets["warmup"], num_threads=threads)
            t = time.perf_counter()
            tok.encode_batch_to_numpy(sets["warm"], num_threads=threads)
            times[threads].append((cold, (time.perf_counter() - t) * 1e3))
    os.sched_setaffinity(0, set(cpus))
    return times


def main_fresh(args, cpus: tuple[int, int]) -> int:
    """``--fresh``: 2 threads / 1 on a new tokenizer's first passes (see the module's doc)."""
    import bpetok

    model = bpetok.Tokenizer.default().model_bytes
    print(
        f"bpetok {bpetok.__version__}: a new tokenizer per pass, 1 thread (CPU {cpus[0]}) and 2 threads "
        f"in turn, {args.rounds} rounds; load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    rows, record = [], {}
    for name in [s for s in args.sets.split(",") if s]:
        sets = draw_sets(Path(args.corpora), name, args.mb)
        mb = {part: sum(map(utf8_len, sets[part])) / 1e6 for part in ("cold", "warm")}
        log(f"{name}: cold {mb['cold']:.2f} MB, warm {mb['warm']:.2f} MB")
        times = fresh_passes(model, sets, args.rounds, cpus)
        record[name] = {"mb": mb, "ms": times}
        rows.append((name, mb, times))
    print()
    print(
        "| corpus | fresh 1 thread, MB/s | fresh 2 threads | fresh 2 / 1 (paired) | warm 1 thread |"
        " warm 2 threads | warm 2 / 1 (paired) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, mb, times in rows:
        cells = []
        for k, part in enumerate(("cold", "warm")):
            one = statistics.median(x[k] for x in times[1])
            two = statistics.median(x[k] for x in times[2])
            paired = statistics.median(a[k] / b[k] for a, b in zip(times[1], times[2], strict=True))
            cells += [
                f"{mb[part] / one * 1e3:.1f}",
                f"{mb[part] / two * 1e3:.1f}",
                f"{one / two:.2f}x ({paired:.2f}x)",
            ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return finish(
        "MB/s from the median pass; 2 / 1: the ratio of the medians, and (paired) the median of "
        "each round's ratio.",
        record,
        args.json,
    )


def finish(legend: str, record: dict, json_path: str | None) -> int:
    """Prints the legend under a table, writes every pass's time to ``json_path`` if given."""
    print()
    print(legend)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(record, f)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpora", default="/tmp/corpora", help="directory of NAME.jsonl corpora")
    ap.add_argument("--sets", default=",".join(SETS), help="comma-separated corpus names")
    ap.add_argument("--mb", type=float, default=3.0, help="sample per corpus, MB (bench_peers.py's warm set)")
    ap.add_argument("--rounds", type=int, default=60, help="timed passes per condition (one per round)")
    ap.add_argument("--json", default=None, help="also write every pass's time to this JSON file")
    ap.add_argument(
        "--fresh",
        action="store_true",
        help="a new tokenizer per pass: fresh (cold set) and warm (after the warm-up set), 1 and 2 threads",
    )
    ap.add_argument("--_neighbour", help=argparse.SUPPRESS)
    ap.add_argument("--_docs", help=argparse.SUPPRESS)
    ap.add_argument("--_cpu", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._neighbour:
        neighbour(args._neighbour, args._docs, args._cpu)
        return 0
    if args.rounds < 1:
        sys.exit("--rounds must be at least 1")
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        sys.exit(f"needs two CPUs, this process may use {allowed}")
    cpus = (allowed[0], allowed[1])
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    if args.fresh:
        return main_fresh(args, cpus)
    import bpetok

    tok = bpetok.Tokenizer.default()
    print(
        f"bpetok {bpetok.__version__}: one thread on CPU {cpus[0]}, the other CPU ({cpus[1]}) idle or busy; "
        f"{args.rounds} interleaved passes per condition; load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    rows, record = [], {}
    compute = Neighbour("compute", "", cpus[1])
    try:
        spins = interleaved(
            {"idle": (1, None), "compute": (1, compute)}, lambda _: spin(SPIN_STEPS), args.rounds, cpus
        )
        control = {name: statistics.median(v) for name, v in spins.items()}
        record["control"] = spins
        with tempfile.TemporaryDirectory(prefix="bpetok-neighbours-") as work:
            for name in [s for s in args.sets.split(",") if s]:
                docs = draw_sets(Path(args.corpora), name, args.mb)["warm"]
                docs_path = str(Path(work) / f"{name}.json")
                with open(docs_path, "w", encoding="utf-8") as f:
                    json.dump(docs, f, ensure_ascii=False)
                mb = sum(map(utf8_len, docs)) / 1e6
                log(f"{name}: {len(docs)} documents, {mb:.2f} MB")
                other = Neighbour("bpetok", docs_path, cpus[1])
                try:
                    for threads in (1, 2):  # warm: the caches, and each thread's scratch space
                        tok.encode_batch_to_numpy(docs, num_threads=threads)
                    conditions = {
                        "idle": (1, None),
                        "compute": (1, compute),
                        "bpetok": (1, other),
                        "two threads": (2, None),
                    }
                    times = interleaved(
                        conditions,
                        lambda threads: tok.encode_batch_to_numpy(docs, num_threads=threads),  # noqa: B023
                        args.rounds,
                        cpus,
                    )
                finally:
                    other.close()
                record[name] = {"mb": mb, "ms": times}
                rows.append((name, mb, {c: statistics.median(v) for c, v in times.items()}))
    finally:
        compute.close()
    print()
    print(
        "| corpus | 1 thread, other CPU idle, MB/s | beside compute | beside bpetok | 2 threads, MB/s |"
        " 2 threads / 1 | 2 / (beside bpetok) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, mb, med in rows:
        idle = med["idle"]
        print(
            f"| {name} | {mb / idle * 1e3:.1f} | {med['compute'] / idle:.3f} | {med['bpetok'] / idle:.3f} | "
            f"{mb / med['two threads'] * 1e3:.1f} | {idle / med['two threads']:.2f}x | "
            f"{2 * idle / med['bpetok']:.2f}x |"
        )
    ratio = control["compute"] / control["idle"]
    print(f"| control: the compute-only loop | {control['idle']:.2f} ms | {ratio:.3f} | | | | |")
    return finish(
        "beside X: the median pass beside X over the median pass beside an idle CPU (1.000: no "
        "slowdown). The control row is the compute-only loop itself, beside a copy of itself.",
        record,
        args.json,
    )


if __name__ == "__main__":
    sys.exit(main())
