#!/usr/bin/env python3
"""Peak memory of `bpetok pack` on the two extreme corpora: one huge document, and many tiny ones.

    python3 benchmarks/bench_memory.py                                  # 1 GB document, 10 million tiny ones
    python3 benchmarks/bench_memory.py --doc-mb 100 --tiny-docs 1000000 # quick: about a minute

In a temporary directory (``--work``) it writes (a) a JSONL file of ONE document of ``--doc-mb``
MB (10**6 bytes) of real text repeated (the Python standard library's sources and the licence
texts of this machine: prose and code, with newlines and quotes that JSON escapes) and (b) a
JSONL file of ``--tiny-docs`` documents of 1 to 6 words. It runs ``python3 -m bpetok pack`` on
each with ``--threads`` 1 and 2 and prints the peak RSS, the wall time and the buffer sizes the
pack's options give (see ``docs/resource-bounds.md`` for where each comes from).

Peak RSS is the ``ru_maxrss`` that ``wait4`` reports for the pack process, started by a small
launcher (``python3 -S``) that forks and execs it. Linux carries a process's peak over ``exec``
from the process it replaces, so a pack started straight from this script (a ``vfork`` of a
process that has held a large document) would report this script's peak instead; the launcher's
own few MB are all that can leak in this way.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

MB = 1_000_000
MIB = 1 << 20

# The pipeline's and writer's fixed buffers (rust/bpetok/src/data/pipeline.rs, input/stream.rs,
# shard/writer.rs, tokenizer/bpe.rs), for the expected-size column.
BATCH_BYTES = 256 << 10
MAX_IN_FLIGHT = 16
READ_BUFFER = 1 << 20
WRITE_BUFFER = 1 << 20
ENCODER_CACHE = 10 * MB  # per encoding thread, at most

LAUNCHER = """
import json, os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.dup2(2, 1)  # the pack's own output goes to stderr; stdout is the launcher's report
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"peak_kb": usage.ru_maxrss, "wall_s": time.perf_counter() - start,
                  "cpu_s": usage.ru_utime + usage.ru_stime, "exit": os.waitstatus_to_exitcode(status)}))
"""


def measure(cmd: list[str], timeout: float | None = None) -> dict[str, Any]:
    """Runs `cmd` in a fresh child and returns its peak RSS (kB), wall and CPU seconds, exit code."""
    run = subprocess.run(
        [sys.executable, "-S", "-c", LAUNCHER, *cmd],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if run.returncode != 0 or not run.stdout.strip():
        raise RuntimeError(f"launcher failed: {run.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    result["stderr"] = run.stderr
    return result


def source_text(limit: int = 8 * MB) -> str:
    """Up to `limit` bytes of real text: licence texts and standard-library modules, in a fixed order."""
    parts: list[str] = []
    size = 0
    paths = (
        sorted(Path("/usr/share/common-licenses").glob("*"))
        if Path("/usr/share/common-licenses").is_dir()
        else []
    )
    paths += sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    for path in paths:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        parts.append(text)
        size += len(text.encode("utf-8"))
        if size >= limit:
            break
    if not parts:
        raise RuntimeError("no source text found")
    return "\n\n".join(parts)


def write_huge_document(path: Path, nbytes: int) -> int:
    """One JSONL record whose text is `nbytes` bytes (UTF-8) of source text repeated; written in
    pieces, so this script never holds the document. Returns the text's size in bytes."""
    base = source_text()
    piece = json.dumps(base, ensure_ascii=False)[1:-1]  # the escaped body of the JSON string
    piece_bytes = len(base.encode("utf-8"))
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"text": "')
        while written + piece_bytes <= nbytes:
            f.write(piece)
            written += piece_bytes
        rest = base.encode("utf-8")[: nbytes - written].decode("utf-8", errors="ignore")
        f.write(json.dumps(rest, ensure_ascii=False)[1:-1])
        written += len(rest.encode("utf-8"))
        f.write('"}\n')
    return written


def write_tiny_documents(path: Path, count: int) -> None:
    rng = random.Random(0)
    words = "the of and to in is was for that on with as by at from tiny document line ok".split()
    lines = [
        json.dumps({"text": " ".join(rng.choices(words, k=rng.randint(1, 6)))}) + "\n" for _ in range(4096)
    ]
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, count, 4096):
            f.write("".join(lines[: min(4096, count - start)]))


def pack_command(inputs: Path, out: Path, threads: int, seq_len: int, window: int) -> list[str]:
    return [
        sys.executable, "-m", "bpetok", "pack", str(inputs), "-o", str(out),
        "--seq-len", str(seq_len), "--window", str(window), "--threads", str(threads),
        "--overwrite", "--quiet",
    ]  # fmt: skip


def buffers(manifest: dict[str, Any], threads: int) -> dict[str, int]:
    """The bytes each bounded buffer can reach with these options and this output."""
    opts = manifest["options"]
    seq_len, pack_buffer = opts["seq_len"], opts["pack_buffer"]
    samples_per_shard = opts["samples_per_shard"]
    return {
        "packer (pack_buffer * seq_len * 4)": pack_buffer * seq_len * 4,
        "writer sample index (2 shards * samples_per_shard * 8)": 2 * 8 * (samples_per_shard + 1),
        "pipeline (16 batches * 256 KiB text, ids alike)": 2 * MAX_IN_FLIGHT * BATCH_BYTES,
        "read + write buffers (tokens and segments of 2 shards)": 2 * READ_BUFFER + 4 * WRITE_BUFFER,
        "encoder caches (10 MB per thread)": threads * ENCODER_CACHE,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--doc-mb", type=float, default=1000, help="size of the huge document (default 1000 MB)"
    )
    parser.add_argument(
        "--tiny-docs", type=int, default=10_000_000, help="tiny documents (default 10 million)"
    )
    parser.add_argument("--threads", default="1,2", help="thread counts to run (default 1,2)")
    parser.add_argument("--seq-len", type=int, default=4096)
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--work", type=Path, default=None, help="keep inputs and outputs here")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]

    work = args.work or Path(tempfile.mkdtemp(prefix="bench_memory-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    try:
        huge, tiny = work / "huge.jsonl", work / "tiny.jsonl"
        t0 = time.perf_counter()
        text_bytes = write_huge_document(huge, int(args.doc_mb * MB))
        print(f"huge: 1 document, {text_bytes / MB:,.0f} MB of text, {huge.stat().st_size / MB:,.0f} MB "
              f"of JSONL ({time.perf_counter() - t0:.0f} s to write)", flush=True)  # fmt: skip
        t0 = time.perf_counter()
        write_tiny_documents(tiny, args.tiny_docs)
        print(f"tiny: {args.tiny_docs:,} documents, {tiny.stat().st_size / MB:,.0f} MB of JSONL "
              f"({time.perf_counter() - t0:.0f} s to write)", flush=True)  # fmt: skip
        for name, path in (("huge", huge), ("tiny", tiny)):
            for t in threads:
                out = work / f"out-{name}-{t}"
                got = measure(pack_command(path, out, t, args.seq_len, args.window))
                if got["exit"] != 0:
                    print(got["stderr"][-3000:], file=sys.stderr)
                    return 1
                manifest = json.loads((out / "manifest.json").read_text())
                totals = manifest["totals"]
                row = {
                    "corpus": name,
                    "threads": t,
                    "input_bytes": path.stat().st_size,
                    "text_bytes": text_bytes if name == "huge" else None,
                    "documents": totals.get("documents"),
                    "tokens": totals.get("document_tokens"),
                    "samples": totals.get("samples"),
                    "shards": len(manifest["shards"]),
                    "peak_rss_mib": round(got["peak_kb"] / 1024, 1),
                    "wall_s": round(got["wall_s"], 1),
                    "cpu_s": round(got["cpu_s"], 1),
                    "buffers": buffers(manifest, t),
                }
                rows.append(row)
                print(
                    f"{name:5} threads {t}: peak RSS {row['peak_rss_mib']:8,.1f} MiB"
                    f"   wall {row['wall_s']:6.1f} s   cpu {row['cpu_s']:6.1f} s"
                    f"   {row['tokens']:,} tokens, {row['samples']:,} samples "
                    f"in {row['shards']} shards",
                    flush=True,
                )
                shutil.rmtree(out)
        for name in ("huge", "tiny"):
            first = next(row for row in rows if row["corpus"] == name)
            print(f"\nbuffers (MiB) for {name}, threads {first['threads']}:")
            for key, value in first["buffers"].items():
                print(f"  {key:70} {value / MIB:8.1f}")
        for row in rows:
            if row["corpus"] == "huge":
                tok = row["tokens"] * 4
                print(
                    f"huge, threads {row['threads']}: text {row['text_bytes'] / MIB:,.0f} MiB, JSONL line "
                    f"{row['input_bytes'] / MIB:,.0f} MiB, ids {tok / MIB:,.0f} MiB; peak / text = "
                    f"{row['peak_rss_mib'] * MIB / row['text_bytes']:.2f}"
                )
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
