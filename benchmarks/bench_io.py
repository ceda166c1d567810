"""The command line end to end on the corpora, input format by input format: ``bpetok pack`` on
the same texts as JSONL and as Parquet, ``bpetok encode`` and ``bpetok decode``, on 1 and 2
threads; optionally against a second build of bpetok (``--baseline DIR``, a folder holding a
``bpetok`` package, as made by ``pip install --target DIR``), interleaved run by run.

MB/s are of UTF-8 text (the same for every format), whole command (interpreter start included),
median of ``--repeat`` runs. The machine is shared: compare ratios in one run, not across runs.

    python3 benchmarks/bench_io.py --corpora /tmp/corpora --repeat 5
    python3 benchmarks/bench_io.py --baseline /tmp/oldpkg      # before/after a change
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

SETS = ("en", "code", "ja")


def build_inputs(corpora: Path, work: Path) -> tuple[list[Path], list[Path], float]:
    """The corpora as JSONL (as they are) and as Parquet (snappy, row groups of 1024), and the MB
    of text they hold."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    jsonl = [corpora / f"{name}.jsonl" for name in SETS]
    parquet = []
    text_bytes = 0
    for path in jsonl:
        texts = [json.loads(line)["text"] for line in path.open(encoding="utf-8")]
        text_bytes += sum(len(t.encode()) for t in texts)
        target = work / f"{path.stem}.parquet"
        pq.write_table(pa.table({"text": texts}), target, row_group_size=1024)
        parquet.append(target)
    return jsonl, parquet, text_bytes / 1e6


def timed(package: str | None, argv: list[str]) -> float:
    env = dict(os.environ)
    if package is not None:
        env["PYTHONPATH"] = package
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bpetok", *argv, "--quiet"], env=env, check=True)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpora", default="/tmp/corpora", help="directory of en/code/ja.jsonl")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per figure (median)")
    ap.add_argument("--baseline", default=None, help="a folder holding another bpetok package")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_io.") as tmp:
        work = Path(tmp)
        jsonl, parquet, text_mb = build_inputs(Path(args.corpora), work)
        ids = work / "ids.jsonl"
        encode = [sys.executable, "-m", "bpetok", "encode", *map(str, jsonl), "-o", str(ids), "--quiet"]
        subprocess.run(encode, check=True)
        out = work / "out"
        cases: dict[str, list[str]] = {}
        for threads in ("1", "2"):
            pack = ["pack", "-o", str(out), "--seq-len", "4096", "--window", "4096", "--threads"]
            cases[f"pack JSONL, {threads} thread(s)"] = [*pack, threads, *map(str, jsonl)]
            cases[f"pack Parquet, {threads} thread(s)"] = [*pack, threads, *map(str, parquet)]
            cases[f"encode JSONL -> JSONL, {threads} thread(s)"] = [
                "encode", "--threads", threads, *map(str, jsonl), "-o", str(work / "e.jsonl")
            ]  # fmt: skip
            cases[f"decode ids -> JSONL, {threads} thread(s)"] = [
                "decode", "--threads", threads, str(ids), "-o", str(work / "d.jsonl")
            ]  # fmt: skip
        builds: dict[str, str | None] = {"this build": None}
        if args.baseline:
            builds["baseline"] = args.baseline
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.repeat):
            for case, argv in cases.items():
                for build, package in builds.items():
                    times.setdefault((case, build), []).append(timed(package, argv))
                    shutil.rmtree(out, ignore_errors=True)
    load = os.getloadavg()[0]
    print(f"load average {load:.2f}; {text_mb:.1f} MB of text; median of {args.repeat}, MB/s of text")
    header = f"{'':40} {'this build':>11}"
    if args.baseline:
        header += f" {'baseline':>10} {'ratio':>7}"
    print(header)
    for case in cases:
        new = text_mb / statistics.median(times[(case, "this build")])
        line = f"{case:40} {new:11.1f}"
        if args.baseline:
            old = text_mb / statistics.median(times[(case, "baseline")])
            line += f" {old:10.1f} {new / old:6.2f}x"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
