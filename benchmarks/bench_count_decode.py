"""Counting and decoding, in the API and on the command line, side by side with encoding:

- ``Tokenizer.count_batch`` against ``encode_batch`` on the same documents (MB/s of text; the
  lists ``encode_batch`` returns are freed inside the timing, as a caller's would be);
- ``Tokenizer.decode`` per document from the lists ``encode_batch`` made and from numpy
  ``uint16`` arrays, and ``decode_batch`` (MB/s of decoded text);
- ``bpetok count`` against ``bpetok encode -o FILE``, and ``bpetok decode`` of encode's ids
  JSONL back to text JSONL (whole commands, interpreter start included, with Python's bytecode
  cache as an installed package has it; MB/s of text).

Every figure is the median of ``--repeat`` runs, the cases of a figure interleaved in each repeat.
The machine is shared: compare ratios measured in one run, not MB/s across runs.

    python3 benchmarks/bench_count_decode.py --corpora /tmp/bpetok-corpora --repeat 5
    python3 benchmarks/bench_count_decode.py --sets en --threads 1 --skip-cli
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import bpetok
import numpy as np


def median_seconds(cases: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Each case run ``repeat`` times, interleaved; the median wall time of each."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, case in cases.items():
            gc.collect()
            start = time.perf_counter()
            result = case()
            del result  # freeing what a call returned is part of its cost
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def api_figures(name: str, texts: list[str], threads: list[int], repeat: int) -> None:
    tok = bpetok.Tokenizer.default()
    mb = sum(len(t.encode()) for t in texts) / 1e6
    ids = tok.encode_batch(texts)
    assert tok.count_batch(texts).tolist() == [len(i) for i in ids], "count_batch differs from encode_batch"
    arrays = [np.array(i, dtype=tok.dtype) for i in ids]
    assert tok.decode_batch(ids) == texts == [tok.decode(a) for a in arrays], (
        "decode does not give the text back"
    )
    tokens = sum(map(len, ids))
    per_token = mb * 1e6 / tokens
    print(f"\n{name}: {len(texts):,} documents, {mb:.1f} MB of text, {tokens:,} ids ({per_token:.2f} B/id)")
    for n in threads:
        cases: dict[str, Callable[[], object]] = {
            "count_batch": lambda n=n: tok.count_batch(texts, num_threads=n),
            "encode_batch": lambda n=n: tok.encode_batch(texts, num_threads=n),
        }
        t = median_seconds(cases, repeat)
        ratio = t["encode_batch"] / t["count_batch"]
        print(
            f"  {n} thread(s): count_batch {mb / t['count_batch']:7.1f} MB/s, encode_batch "
            f"{mb / t['encode_batch']:7.1f} MB/s: count_batch / encode_batch {ratio:.2f}x"
        )
    cases = {
        "decode(list)": lambda: [tok.decode(i) for i in ids],
        "decode(uint16 array)": lambda: [tok.decode(a) for a in arrays],
    }
    for n in threads:
        cases[f"decode_batch, {n} thread(s)"] = lambda n=n: tok.decode_batch(ids, num_threads=n)
    for case, seconds in median_seconds(cases, repeat).items():
        print(f"  {case:28} {mb / seconds:7.1f} MB/s of text, {seconds / tokens * 1e9:5.1f} ns per id")


def cli_env(work: Path) -> dict[str, str]:
    """The environment of the timed commands: Python's bytecode cache on (in ``work``), as for an
    installed package (pip compiles it at install), whatever ``PYTHONDONTWRITEBYTECODE`` says here;
    without it every command would also compile the package's modules (16 ms here)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return env


def cli_seconds(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "bpetok", *argv, "--quiet"], check=True, stdout=subprocess.DEVNULL, env=env
    )
    return time.perf_counter() - start


def cli_figures(name: str, paths: list[Path], mb: float, work: Path, threads: list[int], repeat: int) -> None:
    ids = work / f"{name}.ids.jsonl"
    env = cli_env(work)
    # Untimed; also fills the bytecode cache.
    subprocess.run(
        [sys.executable, "-m", "bpetok", "encode", *map(str, paths), "-o", str(ids), "--quiet"],
        check=True,
        env=env,
    )
    print(f"\n{name} on the command line ({mb:.1f} MB of text; ids JSONL {ids.stat().st_size / 1e6:.1f} MB)")
    for n in threads:
        t = ["--threads", str(n)]
        cases: dict[str, Callable[[], float]] = {
            "count": lambda t=t: cli_seconds(["count", *map(str, paths), *t], env),
            "encode": lambda t=t: cli_seconds(
                ["encode", *map(str, paths), "-o", str(work / "e.jsonl"), *t], env
            ),
            "decode": lambda t=t: cli_seconds(["decode", str(ids), "-o", str(work / "d.jsonl"), *t], env),
        }
        times: dict[str, list[float]] = {case: [] for case in cases}
        for _ in range(repeat):
            for case, run in cases.items():
                times[case].append(run())
        s = {case: statistics.median(v) for case, v in times.items()}
        ratio = s["encode"] / s["count"]
        print(
            f"  {n} thread(s): bpetok count {mb / s['count']:6.1f} MB/s, bpetok encode "
            f"{mb / s['encode']:6.1f} MB/s: count / encode {ratio:.2f}x; "
            f"bpetok decode {mb / s['decode']:6.1f} MB/s of text ({s['decode']:.2f} s)"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpora", default="/tmp/bpetok-corpora", help="directory of en/code/ja.jsonl")
    ap.add_argument("--sets", default="en,code,ja", help="which corpora (comma-separated)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per figure (median)")
    ap.add_argument("--threads", default="1,2", help="thread counts (comma-separated)")
    ap.add_argument("--skip-cli", action="store_true", help="only the API figures")
    ap.add_argument("--skip-api", action="store_true", help="only the command-line figures")
    args = ap.parse_args()
    corpora = Path(args.corpora)
    sets = args.sets.split(",")
    threads = [int(n) for n in args.threads.split(",")]
    where = Path(bpetok.__file__).parent
    print(f"bpetok {bpetok.__version__} from {where}; load average {os.getloadavg()[0]:.2f}")
    print(f"median of {args.repeat} runs; {os.cpu_count()} CPUs")
    texts = {
        s: [json.loads(line)["text"] for line in (corpora / f"{s}.jsonl").open(encoding="utf-8")]
        for s in sets
    }
    if not args.skip_api:
        for s in sets:
            api_figures(s, texts[s], threads, args.repeat)
    if not args.skip_cli:
        with tempfile.TemporaryDirectory(prefix="bench_count_decode.") as tmp:
            work = Path(tmp)
            mb = {s: sum(len(t.encode()) for t in texts[s]) / 1e6 for s in sets}
            for s in sets:
                cli_figures(s, [corpora / f"{s}.jsonl"], mb[s], work, threads, args.repeat)
            if len(sets) > 1:
                paths = [corpora / f"{s}.jsonl" for s in sets]
                cli_figures("+".join(sets), paths, sum(mb.values()), work, threads, args.repeat)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
