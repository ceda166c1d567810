#!/usr/bin/env python3
"""End-to-end `bpetok pack` vs bpetok's encode_batch and the pipelines users write today, and its peak memory.

Run from anywhere (see benchmarks/README.md)::

    python3 benchmarks/bench_pack.py --repeat 3 --large-mb 0      # quick: about 2-3 minutes
    python3 benchmarks/bench_pack.py --repeat 3 --work /tmp/bench_pack --json /tmp/bench_pack.json

Every figure comes from one run on the same input. ``bpetok pack`` is timed as a whole command
(``python3 -m bpetok pack ...`` in a subprocess, interpreter start included); the peer pipelines
(sentencepiece, HF tokenizers: read JSONL, batch encode, numpy concatenation, cut into rows,
``np.save``) are timed the same way, each a fresh subprocess. Figures are medians of ``--repeat``
runs; MB are 10**6 bytes of JSONL input unless a column says otherwise. The script exits non-zero
if a pack output fails ``bpetok verify`` or its token count differs from sentencepiece's.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_encode import spm_to_hf_tokenizer, timed

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
DEFAULT_PEER_MODEL = SHARED / "vocab" / "mixtral-8x7b-v0.1.model"
MB = 1_000_000
MIB = 1 << 20
SETS = ("en", "code", "ja")
THREADS = (1, 2)
TIME_BIN = "/usr/bin/time"

# Targets the figures are checked against (printed as "meets" / "MISSES").
E2E_TARGET = 0.85  # bpetok pack end to end / encode_batch, same texts, 2 threads
PEER_TARGET = 10.0  # bpetok pack / the sentencepiece pipeline, same input, same thread count
MEMORY_TARGET_MIB = 1024.0  # peak RSS of the pack process
FLAT_TARGET = 1.25  # peak at the large size / peak at the small size


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- measuring ------------------------------------------------------------------------------------


class Series:
    """Repeated timings of one command or call on one input."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.walls: list[float] = []
        self.cpus: list[float] = []
        self.peaks_kb: list[int] = []
        self.extra: list[dict[str, Any]] = []

    def add(
        self, wall: float, cpu: float, peak_kb: int | None = None, extra: dict[str, Any] | None = None
    ) -> None:
        self.walls.append(wall)
        self.cpus.append(cpu)
        if peak_kb is not None:
            self.peaks_kb.append(peak_kb)
        if extra is not None:
            self.extra.append(extra)

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def mb_s(self) -> float:
        return self.nbytes / MB / self.wall

    @property
    def cpu_per_wall(self) -> float:
        return statistics.median(c / w for c, w in zip(self.cpus, self.walls, strict=True))

    @property
    def peak_mib(self) -> float | None:
        return max(self.peaks_kb) / 1024 if self.peaks_kb else None

    def median_extra(self, key: str) -> float | None:
        values = [e[key] for e in self.extra if e.get(key) is not None]
        return statistics.median(values) if values else None

    def as_json(self) -> dict[str, Any]:
        return {
            "mb_per_s": round(self.mb_s, 3),
            "wall_s_median": round(self.wall, 4),
            "cpu_per_wall": round(self.cpu_per_wall, 3),
            "peak_rss_mib": None if self.peak_mib is None else round(self.peak_mib, 1),
            "bytes": self.nbytes,
            "wall_s": [round(w, 4) for w in self.walls],
            "cpu_s": [round(c, 4) for c in self.cpus],
            "peak_rss_kb": self.peaks_kb,
            "phases": self.extra,
        }


def run_command(cmd: Sequence[str], env: dict[str, str] | None = None) -> tuple[str, float, float, int]:
    """Runs ``cmd`` to completion; returns (stdout, wall seconds, CPU seconds, peak RSS in kB).

    Wall time is measured around the whole command (interpreter start included). The peak RSS is
    ``/usr/bin/time -v``'s "Maximum resident set size" (the process's VmHWM) when that program
    exists, else the ``ru_maxrss`` of ``wait4``; CPU time (user + system) comes from ``wait4``.
    """
    full_env = {**os.environ, **(env or {})}
    time_out = None
    argv = list(cmd)
    if os.access(TIME_BIN, os.X_OK):
        fd, time_out = tempfile.mkstemp(prefix="bench_pack_time_", suffix=".txt")
        os.close(fd)
        argv = [TIME_BIN, "-v", "-o", time_out, *argv]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=full_env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    peak_kb = usage.ru_maxrss
    if time_out is not None:
        with open(time_out) as f:
            m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", f.read())
        os.unlink(time_out)
        if m:
            peak_kb = int(m.group(1))
    if proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{stderr}")
    return stdout, wall, usage.ru_utime + usage.ru_stime, peak_kb


# ---- inputs ---------------------------------------------------------------------------------------


def read_lines(paths: Sequence[Path]) -> list[bytes]:
    """The non-blank lines of JSONL files, each ending in a newline."""
    lines = []
    for p in paths:
        with open(p, "rb") as f:
            for line in f:
                if line.strip():
                    lines.append(line if line.endswith(b"\n") else line + b"\n")
    return lines


def write_atomic(path: Path, lines: Sequence[bytes]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.writelines(lines)
    os.replace(tmp, path)


def peer_sample(lines: Sequence[bytes], cap_mb: float, seed: int = 0) -> list[bytes]:
    """A seeded random sample of whole documents of at most about ``cap_mb`` MB, in input order."""
    if not cap_mb or sum(map(len, lines)) <= cap_mb * MB:
        return list(lines)
    order = list(range(len(lines)))
    random.Random(seed).shuffle(order)
    chosen, total = [], 0
    for i in order:
        if total + len(lines[i]) > cap_mb * MB:
            break
        chosen.append(i)
        total += len(lines[i])
    return [lines[i] for i in sorted(chosen)]


def build_sized_corpus(path: Path, lines: Sequence[bytes], target_mb: float, seed: int) -> tuple[bool, int]:
    """Writes about ``target_mb`` MB of JSONL: the corpora's documents repeated, each round shuffled
    with its own seed (document level), stopping at the first document boundary past the target.
    Returns (built now, documents); an existing file of that name is reused (it was renamed into
    place only when complete)."""
    if path.is_file():
        with open(path, "rb") as f:
            return False, sum(1 for _ in f)
    out: list[bytes] = []
    total = 0
    rnd = 0
    while total < target_mb * MB:
        order = list(range(len(lines)))
        random.Random(seed * 1000 + rnd).shuffle(order)
        for i in order:
            out.append(lines[i])
            total += len(lines[i])
            if total >= target_mb * MB:
                break
        rnd += 1
    write_atomic(path, out)
    return True, len(out)


def parse_texts(paths: Sequence[Path]) -> list[str]:
    texts = []
    for p in paths:
        with open(p, encoding="utf-8") as f:
            texts.extend(json.loads(line)["text"] for line in f if line.strip())
    return texts


# ---- the peer pipelines (fresh subprocesses) ------------------------------------------------------


def worker_pipeline(cfg: dict[str, Any]) -> dict[str, Any]:
    """What users write today: read the JSONL with json, batch encode with bos/eos, one numpy token
    stream, cut into rows of L (the last one padded with </s>), ``np.save``. No chunking with the
    window's context, no packing, no document boundaries: a lower bound on what users pay."""
    t0 = time.perf_counter()
    import numpy as np

    engine, threads, seq_len = cfg["engine"], cfg["threads"], cfg["seq_len"]
    if engine == "sentencepiece":
        import sentencepiece

        sp = sentencepiece.SentencePieceProcessor(model_file=cfg["model"])
        eos = sp.eos_id()
    else:
        from tokenizers import Tokenizer

        hf = Tokenizer.from_file(cfg["model"])  # its post-processor adds <s> and </s>
        eos = hf.token_to_id("</s>")
    t1 = time.perf_counter()
    with open(cfg["input"], encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    t2 = time.perf_counter()
    if engine == "sentencepiece":
        ids = sp.encode(texts, num_threads=threads, add_bos=True, add_eos=True)
    else:
        ids = [e.ids for e in hf.encode_batch(texts)]  # RAYON_NUM_THREADS set by the parent
    t3 = time.perf_counter()
    stream = np.concatenate([np.asarray(x, dtype=np.uint16) for x in ids])
    rows = -(-len(stream) // seq_len)
    padded = np.full(rows * seq_len, eos, dtype=np.uint16)
    padded[: len(stream)] = stream
    samples = padded.reshape(rows, seq_len)
    t4 = time.perf_counter()
    np.save(cfg["output"], samples)
    t5 = time.perf_counter()
    return {
        "documents": len(texts),
        "tokens": len(stream),
        "doc_lengths_sha256": hashlib.sha256(
            np.asarray([len(x) for x in ids], dtype=np.int64).tobytes()
        ).hexdigest(),
        "phases": {
            "import_load_s": t1 - t0,
            "read_json_s": t2 - t1,
            "encode_s": t3 - t2,
            "concat_rows_s": t4 - t3,
            "save_s": t5 - t4,
        },
    }


def worker_encode(cfg: dict[str, Any]) -> dict[str, Any]:
    """bpetok's own ``encode_batch`` over a whole (large) JSONL input, as a user holding it in
    chunks would run it: texts parsed ``chunk_mb`` at a time (not timed), each chunk encoded with
    ``encode_batch(..., num_threads=N)`` (timed), the ids dropped. A fresh process and tokenizer."""
    import bpetok

    tok = bpetok.Tokenizer.default()
    limit = cfg["chunk_mb"] * MB
    wall = cpu = 0.0
    documents = tokens = 0

    def encode(chunk: list[str]) -> None:
        nonlocal wall, cpu, documents, tokens
        w0, c0 = time.perf_counter(), time.process_time()
        out = tok.encode_batch(chunk, add_bos=True, add_eos=True, num_threads=cfg["threads"])
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
        documents += len(out)
        tokens += sum(map(len, out))

    chunk: list[str] = []
    size = 0
    with open(cfg["input"], encoding="utf-8") as f:
        for line in f:
            if line.strip():
                chunk.append(json.loads(line)["text"])
                size += len(chunk[-1])
                if size >= limit:
                    encode(chunk)
                    chunk, size = [], 0
    if chunk:
        encode(chunk)
    return {"encode_s": wall, "cpu_s": cpu, "documents": documents, "tokens": tokens}


def worker_cmd(kind: str, cfg_path: str) -> list[str]:
    """The command of a worker subprocess: ``pipeline`` (a peer pipeline) or ``encode``."""
    return [sys.executable, str(Path(__file__).resolve()), "--_worker", kind, "--_config", cfg_path]


# ---- the benchmark --------------------------------------------------------------------------------


def pack_cmd(inputs: Sequence[Path], out: Path, args: argparse.Namespace, threads: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bpetok",
        "pack",
        *map(str, inputs),
        "-o",
        str(out),
        "--seq-len",
        str(args.seq_len),
        "--window",
        str(args.window),
        "--threads",
        str(threads),
        "--quiet",
        "--json",
    ]


def run_pack(
    inputs: Sequence[Path], out: Path, args: argparse.Namespace, threads: int
) -> tuple[dict[str, Any], float, float, int]:
    if out.exists():
        shutil.rmtree(out)
    stdout, wall, cpu, peak = run_command(pack_cmd(inputs, out, args, threads))
    return json.loads(stdout.strip().splitlines()[-1]), wall, cpu, peak


def verify(out: Path) -> tuple[bool, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "bpetok", "verify", str(out)], capture_output=True, text=True
    )
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpora", default="/tmp/corpora", help="directory of en/code/ja.jsonl corpora")
    ap.add_argument("--seq-len", type=int, default=4096, help="tokens per sample (default 4096)")
    ap.add_argument("--window", type=int, default=4096, help="sliding window W (default 4096)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per figure; the median is reported")
    ap.add_argument(
        "--peer-mb",
        type=float,
        default=0.0,
        help="cap on the input of the comparison with the sentencepiece / HF pipelines (~2-8 MB/s): a "
        "seeded sample of whole documents of the corpora, in MB of JSONL; 0 = no cap, the whole corpus "
        "(default; about 1 minute per repeat)",
    )
    ap.add_argument(
        "--small-mb", type=float, default=100.0, help="smaller corpus of the memory runs (default 100)"
    )
    ap.add_argument(
        "--large-mb",
        type=float,
        default=1000.0,
        help="larger corpus of the memory runs (default 1000; 0 = skip)",
    )
    ap.add_argument(
        "--work",
        default=None,
        help="folder for the built corpora and outputs; kept, and built corpora reused, when given "
        "(default: a temporary folder, removed at the end)",
    )
    ap.add_argument(
        "--vocab", default=None, help=f"peers' SentencePiece .model (default {DEFAULT_PEER_MODEL})"
    )
    ap.add_argument("--json", default=None, help="also write all figures to this JSON file")
    ap.add_argument("--_worker", help=argparse.SUPPRESS)
    ap.add_argument("--_config", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._worker:
        with open(args._config) as f:
            cfg = json.load(f)
        worker = worker_encode if args._worker == "encode" else worker_pipeline
        print(json.dumps(worker(cfg)))
        return 0
    return run(args)


def run(args: argparse.Namespace) -> int:
    if args.repeat < 1:
        sys.exit("--repeat must be >= 1")
    import bpetok
    import numpy
    import sentencepiece
    import tokenizers
    from tokenizers import processors

    corpora_dir = Path(args.corpora)
    corpus_paths = [corpora_dir / f"{s}.jsonl" for s in SETS]
    missing = [str(p) for p in corpus_paths if not p.is_file()]
    if missing:
        sys.exit(
            f"corpora {missing} not found. Build them with:\n"
            f"  cd {REPO_ROOT} && python3 ../shared/corpora/build.py {corpora_dir} --install"
        )
    peer_model = Path(args.vocab) if args.vocab else DEFAULT_PEER_MODEL
    if not peer_model.is_file():
        sys.exit(f"{peer_model} not found; pass --vocab PATH to a SentencePiece .model")
    bp_tok = bpetok.Tokenizer.default()  # what `bpetok pack` uses without --vocab
    same_model = bp_tok.model_bytes == peer_model.read_bytes()

    if args.work:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
        tmpdir = None
    else:
        tmpdir = tempfile.TemporaryDirectory(prefix="bench_pack_")
        work = Path(tmpdir.name)
    failures: list[str] = []
    notes: list[str] = []

    # ---- inputs
    lines = read_lines(corpus_paths)
    main_bytes = sum(p.stat().st_size for p in corpus_paths)
    peer_lines = peer_sample(lines, args.peer_mb)
    peer_path = work / f"peer-{args.peer_mb:g}mb.jsonl"
    write_atomic(peer_path, peer_lines)
    peer_bytes = peer_path.stat().st_size
    del peer_lines

    sp = sentencepiece.SentencePieceProcessor(model_file=str(peer_model))
    log("building the HF tokenizer from the .model (bench_encode.spm_to_hf_tokenizer) ...")
    hf = spm_to_hf_tokenizer(sp)
    hf.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", sp.bos_id()), ("</s>", sp.eos_id())]
    )
    hf_path = work / "hf-tokenizer.json"
    hf.save(str(hf_path))
    del hf

    sizes: list[tuple[str, float]] = [("small", args.small_mb)]
    if args.large_mb:
        free = shutil.disk_usage(work).free
        need = 3 * (args.large_mb + args.small_mb) * MB  # input + shards (~0.6x) + slack
        if free < need:
            notes.append(
                f"large size skipped: {free / 1e9:.1f} GB free in {work}, {need / 1e9:.1f} GB wanted "
                "(use --work on a bigger disk)"
            )
        else:
            sizes.append(("large", args.large_mb))
    sized: dict[str, tuple[Path, int, bool]] = {}
    for label, mb in sizes:
        path = work / f"corpus-{mb:g}mb.jsonl"
        log(f"{'reusing' if path.is_file() else 'building'} {path} ...")
        built, ndocs = build_sized_corpus(path, lines, mb, seed=1)
        sized[label] = (path, ndocs, built)
    main_docs = len(lines)
    del lines

    load0 = os.getloadavg()
    ncpu = len(os.sched_getaffinity(0))
    header = [
        "bpetok pack benchmark",
        f"  bpetok {bpetok.__version__}, sentencepiece {sentencepiece.__version__}, tokenizers "
        f"{tokenizers.__version__}, numpy {numpy.__version__}; Python {platform.python_version()}, "
        f"{ncpu} CPUs usable, load average at start {load0[0]:.2f}",
        f"  bpetok imported from {Path(bpetok.__file__).parent}; pack uses its embedded vocabulary",
        f"  peers' vocab: {peer_model}" + ("" if same_model else "  (NOTE: not the same bytes as bpetok's)"),
        f"  --seq-len {args.seq_len} --window {args.window}; medians of {args.repeat} runs; "
        "MB = 10^6 bytes of JSONL input",
        f"  main input: {', '.join(str(p) for p in corpus_paths)} "
        f"({main_docs} documents, {main_bytes / MB:.1f} MB)",
        (
            f"  peer input: the main input in one file ({peer_bytes / MB:.1f} MB, --peer-mb 0)"
            if not args.peer_mb
            else f"  peer input: a seeded sample of whole documents, {len(read_lines([peer_path]))} "
            f"documents, {peer_bytes / MB:.1f} MB (--peer-mb {args.peer_mb:g})"
        ),
        f"  peak RSS from {'/usr/bin/time -v' if os.access(TIME_BIN, os.X_OK) else 'wait4 ru_maxrss'}; "
        f"work folder {work}",
    ]
    if load0[0] > 0.5:
        header.append(
            f"  WARNING: load average {load0[0]:.2f} at start on {ncpu} CPUs: other processes compete for "
            "the CPUs, so figures are noisy and 2-thread figures understate scaling"
        )
    header += ["  NOTE: " + n for n in notes]

    # ---- 1. pack end to end vs encode_batch on the same texts (the main input)
    log(f"parsing the main input ({main_bytes / MB:.1f} MB) for encode_batch ...")
    texts = parse_texts(corpus_paths)
    text_bytes = sum(len(t.encode("utf-8")) for t in texts)
    s1: dict[str, Series] = {}
    for n in THREADS:
        s1[f"pack{n}"] = Series(main_bytes)
        s1[f"enc{n}"] = Series(main_bytes)
        s1[f"warm{n}"] = Series(main_bytes)
    fresh = [bp_tok]

    def enc_fresh(n: int) -> Any:
        return fresh[0].encode_batch(texts, add_bos=True, add_eos=True, num_threads=n)

    main_out = {n: work / f"out-main-t{n}" for n in THREADS}
    encoded_tokens = None
    log(f"[1] pack vs encode_batch on the main input, {args.repeat} repeats ...")
    for _ in range(args.repeat):
        for n in THREADS:
            summary, wall, cpu, peak = run_pack(corpus_paths, main_out[n], args, n)
            s1[f"pack{n}"].add(wall, cpu, peak, {"inner_s": summary["seconds"], "tokens": summary["tokens"]})
            # A tokenizer loaded just before the timed call (load not timed), as in a pack process.
            fresh[0] = bpetok.Tokenizer.from_bytes(bp_tok.model_bytes)
            out, wall, cpu = timed(lambda n=n: enc_fresh(n))
            s1[f"enc{n}"].add(wall, cpu)
            if encoded_tokens is None:
                encoded_tokens = sum(map(len, out))
            del out
            out, wall, cpu = timed(
                lambda n=n: bp_tok.encode_batch(texts, add_bos=True, add_eos=True, num_threads=n)
            )
            s1[f"warm{n}"].add(wall, cpu)
            del out
    texts.clear()
    gc.collect()

    # ---- 2. pack vs the naive pipelines on the capped peer input
    s2: dict[str, Series] = {}
    peer_out = {n: work / f"out-peer-t{n}" for n in THREADS}
    peer_results: dict[str, dict[str, Any]] = {}
    cfg_paths: dict[str, str] = {}
    for engine, model in (("sentencepiece", str(peer_model)), ("hf", str(hf_path))):
        for n in THREADS:
            key = f"{'sp' if engine == 'sentencepiece' else 'hf'}{n}"
            cfg = {
                "engine": engine,
                "model": model,
                "threads": n,
                "seq_len": args.seq_len,
                "input": str(peer_path),
                "output": str(work / f"out-{key}.npy"),
            }
            cfg_paths[key] = str(work / f"cfg-{key}.json")
            with open(cfg_paths[key], "w") as f:
                json.dump(cfg, f)
            s2[key] = Series(peer_bytes)
    for n in THREADS:
        s2[f"pack{n}"] = Series(peer_bytes)
    log(f"[2] pack vs sentencepiece / HF pipelines on {peer_bytes / MB:.1f} MB, {args.repeat} repeats ...")
    peer_pack_summary: dict[int, dict[str, Any]] = {}
    for rep in range(args.repeat):
        for n in THREADS:
            summary, wall, cpu, peak = run_pack([peer_path], peer_out[n], args, n)
            s2[f"pack{n}"].add(wall, cpu, peak, {"inner_s": summary["seconds"]})
            peer_pack_summary[n] = summary
            for key in (f"sp{n}", f"hf{n}"):
                env = {"RAYON_NUM_THREADS": str(n), "TOKENIZERS_PARALLELISM": "true"}
                stdout, wall, cpu, peak = run_command(worker_cmd("pipeline", cfg_paths[key]), env)
                res = json.loads(stdout.strip().splitlines()[-1])
                s2[key].add(wall, cpu, peak, res["phases"])
                peer_results[key] = res
                os.unlink(work / f"out-{key}.npy")
            log(f"  repeat {rep + 1}/{args.repeat}, {n} thread(s): done")

    # ---- 3. peak memory at two corpus sizes (2 threads, one run each)
    mem: dict[str, dict[str, Any]] = {}
    for label, (path, ndocs, built) in sized.items():
        nbytes = path.stat().st_size
        log(f"[3] peak memory: pack of {path.name} ({nbytes / MB:.0f} MB) on 2 threads ...")
        out_dir = work / f"out-{label}"
        summary, wall, cpu, peak = run_pack([path], out_dir, args, 2)
        log(f"[3] encode_batch on the texts of {path.name}, 2 threads, in a fresh process ...")
        enc_cfg = work / f"cfg-encode-{label}.json"
        enc_cfg.write_text(json.dumps({"input": str(path), "threads": 2, "chunk_mb": 64}))
        stdout, _, _, _ = run_command(worker_cmd("encode", str(enc_cfg)))
        enc = json.loads(stdout.strip().splitlines()[-1])
        if enc["tokens"] != summary["tokens"]:
            failures.append(
                f"{path.name}: pack tokens {summary['tokens']} != encode_batch tokens {enc['tokens']}"
            )
        mem[label] = {
            "encode_batch_s": enc["encode_s"],
            "encode_batch_cpu_per_wall": enc["cpu_s"] / enc["encode_s"],
            "path": str(path),
            "documents": ndocs,
            "bytes": nbytes,
            "built_now": built,
            "peak_rss_kb": peak,
            "peak_rss_mib": peak / 1024,
            "wall_s": wall,
            "cpu_per_wall": cpu / wall,
            "mb_per_s": nbytes / MB / wall,
            "inner_s": summary["seconds"],
            "tokens": summary["tokens"],
            "samples": summary["samples"],
        }
        shutil.rmtree(out_dir)

    # ---- 4. parity
    log("[4] verify and token counts ...")
    parity: dict[str, Any] = {}
    for label, out_dir in (("main input, 1 thread", main_out[1]), ("peer input, 2 threads", peer_out[2])):
        ok, msg = verify(out_dir)
        parity[f"verify {label}"] = {"ok": ok, "output": msg}
        if not ok:
            failures.append(f"bpetok verify {out_dir} failed: {msg}")
    for name, outs in (("main", main_out), ("peer", peer_out)):
        same = file_sha256(outs[1] / "manifest.json") == file_sha256(outs[2] / "manifest.json")
        parity[f"{name} output identical on 1 and 2 threads"] = same
        if not same:
            failures.append(f"{name} input: pack output differs between --threads 1 and 2")
    manifest = json.loads((peer_out[2] / "manifest.json").read_text())
    sp_tokens = peer_results["sp2"]["tokens"]
    hf_tokens = peer_results["hf2"]["tokens"]
    pack_tokens = manifest["totals"]["document_tokens"]
    parity["peer document_tokens"] = {
        "pack": pack_tokens,
        "sentencepiece (sum of len(ids)+2)": sp_tokens,
        "HF": hf_tokens,
        "pack documents": manifest["totals"]["documents"],
        "sentencepiece documents": peer_results["sp2"]["documents"],
        "sp doc lengths same on 1 and 2 threads": peer_results["sp1"]["doc_lengths_sha256"]
        == peer_results["sp2"]["doc_lengths_sha256"],
    }
    if pack_tokens != sp_tokens or manifest["totals"]["documents"] != peer_results["sp2"]["documents"]:
        failures.append(
            f"peer input: pack document_tokens {pack_tokens} != sentencepiece {sp_tokens} "
            f"(documents {manifest['totals']['documents']} vs {peer_results['sp2']['documents']})"
        )
    main_manifest = json.loads((main_out[1] / "manifest.json").read_text())
    if encoded_tokens != main_manifest["totals"]["document_tokens"]:
        failures.append(
            f"main input: pack document_tokens {main_manifest['totals']['document_tokens']} != "
            f"encode_batch tokens {encoded_tokens}"
        )
    parity["main document_tokens"] = {
        "pack": main_manifest["totals"]["document_tokens"],
        "encode_batch": encoded_tokens,
    }
    load1 = os.getloadavg()

    report = format_report(
        header, s1, s2, mem, parity, failures, args, load1, main_bytes, text_bytes, peer_bytes, peer_results
    )
    print(report["text"])

    if args.json:
        data = {
            "config": {
                "corpora": str(corpora_dir),
                "seq_len": args.seq_len,
                "window": args.window,
                "repeat": args.repeat,
                "peer_mb": args.peer_mb,
                "small_mb": args.small_mb,
                "large_mb": args.large_mb,
                "peer_vocab": str(peer_model),
                "same_model_bytes": same_model,
                "versions": {
                    "bpetok": bpetok.__version__,
                    "sentencepiece": sentencepiece.__version__,
                    "tokenizers": tokenizers.__version__,
                    "numpy": numpy.__version__,
                    "python": platform.python_version(),
                },
                "cpus": ncpu,
                "loadavg_start_end": [load0[0], load1[0]],
                "notes": notes,
            },
            "main_input": {"bytes": main_bytes, "text_bytes": text_bytes, "documents": main_docs},
            "peer_input": {"bytes": peer_bytes, "path": str(peer_path)},
            "end_to_end": {k: s.as_json() for k, s in s1.items()},
            "pipelines": {k: s.as_json() for k, s in s2.items()},
            "memory": mem,
            "parity": parity,
            "ratios": report["ratios"],
            "targets": report["targets"],
            "failures": failures,
        }
        with open(args.json, "w") as f:
            json.dump(data, f, indent=2)
        print(f"figures written to {args.json}")
    for n in THREADS:
        for d in (main_out[n], peer_out[n]):
            shutil.rmtree(d, ignore_errors=True)
    if tmpdir is not None:
        tmpdir.cleanup()
    return 1 if failures else 0


# ---- report ---------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def fmt_mib(x: float | None) -> str:
    return "" if x is None else f"{x:.0f}"


def format_report(
    header: list[str],
    s1: dict[str, Series],
    s2: dict[str, Series],
    mem: dict[str, dict[str, Any]],
    parity: dict[str, Any],
    failures: list[str],
    args: argparse.Namespace,
    load1: tuple[float, float, float],
    main_bytes: int,
    text_bytes: int,
    peer_bytes: int,
    peer_results: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    lines = [*header, f"  load average at end {load1[0]:.2f}", ""]
    targets: list[dict[str, Any]] = []
    ratios: dict[str, float] = {}

    def row(label: str, thr: int, s: Series, text_mb: float | None = None, note: str = "") -> str:
        tm = f"{text_mb / s.wall:9.1f}" if text_mb is not None else f"{'':>9}"
        return (
            f"{label:<52}{thr:>3}{s.wall:9.3f}{s.mb_s:9.1f}{tm} [{s.cpu_per_wall:4.2f}]"
            f"{fmt_mib(s.peak_mib):>8}  {note}".rstrip()
        )

    head = f"{'':<52}{'thr':>3}{'wall s':>9}{'MB/s':>9}{'text':>9} {'cpu/w':>6}{'peak':>8}"
    legend = (
        "  MB/s = MB of JSONL input per wall second (median); text = MB/s of the UTF-8 text alone; "
        "[cpu/w] = CPU time / wall time\n  (~1.0 one busy thread, ~2.0 two, lower = waited for a CPU); "
        "peak = peak RSS of the process, MiB"
    )

    # 1
    lines.append(
        f"1. END TO END vs ENCODE_BATCH  main input ({main_bytes / MB:.1f} MB of JSONL, "
        f"{text_bytes / MB:.1f} MB of text)"
    )
    lines += [head, "-" * len(head)]
    text_mb = text_bytes / MB
    for n in THREADS:
        p = s1[f"pack{n}"]
        inner = p.median_extra("inner_s")
        lines.append(
            row(
                "bpetok pack (whole command)",
                n,
                p,
                text_mb,
                f"inside the command {inner:.3f} s, start + exit {p.wall - inner:.3f} s" if inner else "",
            )
        )
    for n in THREADS:
        lines.append(row("encode_batch(texts, bos+eos), fresh tokenizer [a]", n, s1[f"enc{n}"], text_mb))
    for n in THREADS:
        lines.append(row("encode_batch(texts, bos+eos), reused tokenizer [b]", n, s1[f"warm{n}"], text_mb))
    lines += [
        legend,
        "  [a] in this process on the texts already parsed from the JSONL (parsing not timed); a tokenizer "
        "loaded just before\n      each timed call (load not timed), as in a pack process: the reference",
        "  [b] one tokenizer reused across the repeats (warm segment caches): context",
        "",
    ]
    lines.append(f"{'ratio':<60}{'1 thread':>10}{'2 threads':>11}   target")
    lines.append("-" * 100)
    for label, ref, kind in (
        ("pack end to end / encode_batch, fresh tokenizer", "enc", "target"),
        ("pack end to end / encode_batch, reused tokenizer", "warm", None),
    ):
        vals = {n: s1[f"pack{n}"].mb_s / s1[f"{ref}{n}"].mb_s for n in THREADS}
        for n in THREADS:
            ratios[f"{label} [{n} thread(s)]"] = round(vals[n], 3)
        tgt = ""
        if kind:
            ok = vals[2] >= E2E_TARGET
            tgt = f"2 threads >={E2E_TARGET:.0%} {verdict(ok)}"
            targets.append({"what": f"{label}, 2 threads", "value": vals[2], "target": E2E_TARGET, "ok": ok})
        lines.append(f"{label:<60}{vals[1]:9.1%}{vals[2]:11.1%}   {tgt}".rstrip())
    lines.append("")

    # 2
    lines.append(
        f"2. PACK vs THE PIPELINES USERS WRITE TODAY  peer input ({peer_bytes / MB:.1f} MB of JSONL), "
        f"each a whole command"
    )
    lines += [head, "-" * len(head)]
    names = {"pack": "bpetok pack", "sp": "sentencepiece pipeline [c]", "hf": "HF tokenizers pipeline [c]"}
    for n in THREADS:
        for key in ("pack", "sp", "hf"):
            s = s2[f"{key}{n}"]
            inner = s.median_extra("inner_s")
            note = f"inside the command {inner:.3f} s, start + exit {s.wall - inner:.3f} s" if inner else ""
            if key != "pack":
                ph = {k: s.median_extra(k) for k in s.extra[0]}
                note = "  ".join(f"{k.removesuffix('_s')} {v:.2f}" for k, v in ph.items() if v is not None)
            lines.append(row(names[key], n, s, None, note))
    lines += [
        legend,
        "  [c] python3: json.loads per line; sentencepiece encode(texts, num_threads=N, add_bos, "
        "add_eos) / HF encode_batch\n      (RAYON_NUM_THREADS=N, tokenizer built by "
        "bench_encode.spm_to_hf_tokenizer + a <s> $A </s> post-processor)\n      + [e.ids ...]; "
        "np.concatenate of uint16 arrays, cut into rows of L (last row padded), np.save. Phases in "
        "seconds (medians).",
        "      NOTE: these pipelines do no sliding-window chunking, no best-fit packing, keep no document "
        "boundaries and write\n      no manifest: they only give a LOWER BOUND on what users pay for what "
        "pack does.",
        f"  tokens: sentencepiece {peer_results['sp2']['tokens']:,}, HF {peer_results['hf2']['tokens']:,}"
        + (
            " (HF differs from sentencepiece)"
            if peer_results["hf2"]["tokens"] != peer_results["sp2"]["tokens"]
            else ""
        ),
        "",
    ]
    lines.append(f"{'ratio (same input, same thread count)':<60}{'1 thread':>10}{'2 threads':>11}   target")
    lines.append("-" * 100)
    for label, peer, kind in (
        ("bpetok pack / sentencepiece pipeline", "sp", "target"),
        ("bpetok pack / HF tokenizers pipeline", "hf", None),
    ):
        vals = {n: s2[f"pack{n}"].mb_s / s2[f"{peer}{n}"].mb_s for n in THREADS}
        for n in THREADS:
            ratios[f"{label} [{n} thread(s)]"] = round(vals[n], 3)
        tgt = ""
        if kind:
            oks = {n: vals[n] >= PEER_TARGET for n in THREADS}
            for n in THREADS:
                targets.append(
                    {"what": f"{label}, {n} thread(s)", "value": vals[n], "target": PEER_TARGET, "ok": oks[n]}
                )
            tgt = f">={PEER_TARGET:g}x: 1 thread {verdict(oks[1])}, 2 threads {verdict(oks[2])}"
        lines.append(f"{label:<60}{vals[1]:9.2f}x{vals[2]:10.2f}x   {tgt}".rstrip())
    lines.append("")

    # 3
    lines.append("3. PEAK MEMORY of `bpetok pack` (whole process, 2 threads, one run per size)")
    head3 = (
        f"{'input':<34}{'MB':>8}{'docs':>10}{'peak MiB':>10}{'wall s':>9}{'MB/s':>8} {'cpu/w':>6}   target"
    )
    lines += [head3, "-" * len(head3)]
    for label in ("small", "large"):
        if label not in mem:
            lines.append(f"  ({label} size skipped: --{label}-mb 0 or not enough disk; flatness not checked)")
            continue
        m = mem[label]
        ok = m["peak_rss_mib"] < MEMORY_TARGET_MIB
        targets.append(
            {
                "what": f"pack peak RSS, {m['bytes'] / MB:.0f} MB",
                "value": m["peak_rss_mib"],
                "target": MEMORY_TARGET_MIB,
                "ok": ok,
            }
        )
        lines.append(
            f"{Path(m['path']).name:<34}{m['bytes'] / MB:8.0f}{m['documents']:>10,}{m['peak_rss_mib']:10.0f}"
            f"{m['wall_s']:9.2f}{m['mb_per_s']:8.1f} [{m['cpu_per_wall']:4.2f}]   "
            f"<{MEMORY_TARGET_MIB:g} MiB {verdict(ok)}"
        )
    if "small" in mem and "large" in mem:
        r = mem["large"]["peak_rss_mib"] / mem["small"]["peak_rss_mib"]
        ratios["pack peak RSS large / small"] = round(r, 3)
        ok = r <= FLAT_TARGET
        targets.append(
            {"what": "pack peak RSS large / small (flat)", "value": r, "target": FLAT_TARGET, "ok": ok}
        )
        grow = mem["large"]["bytes"] / mem["small"]["bytes"]
        lines.append(
            f"{'peak large / small':<34}{'':>8}{'':>10}{r:9.2f}x   (input {grow:.1f}x)"
            f"{'':>10}<={FLAT_TARGET:g}x {verdict(ok)}"
        )
    lines.append(
        "  the corpora's documents repeated, each round shuffled at document level (seeded); "
        f"--seq-len {args.seq_len} --window {args.window}"
    )
    lines.append("")
    lines.append("   STEADY STATE: the same runs against encode_batch on the same texts, 2 threads [d]")
    head3b = (
        f"{'input':<34}{'pack s':>9}{'pack MB/s':>11}{'enc s':>9}{'enc MB/s':>10}{'pack/enc':>10}   target"
    )
    lines += [head3b, "-" * len(head3b)]
    for label in ("small", "large"):
        if label not in mem:
            continue
        m = mem[label]
        r = m["encode_batch_s"] / m["wall_s"]
        ratios[f"pack end to end / encode_batch, {m['bytes'] / MB:.0f} MB, 2 threads"] = round(r, 3)
        ok = r >= E2E_TARGET
        targets.append(
            {
                "what": f"pack end to end / encode_batch on {m['bytes'] / MB:.0f} MB, 2 threads",
                "value": r,
                "target": E2E_TARGET,
                "ok": ok,
            }
        )
        lines.append(
            f"{Path(m['path']).name:<34}{m['wall_s']:9.2f}{m['mb_per_s']:11.1f}{m['encode_batch_s']:9.2f}"
            f"{m['bytes'] / MB / m['encode_batch_s']:10.1f}{r:9.1%}   >={E2E_TARGET:.0%} {verdict(ok)}"
        )
    lines.append(
        "  [d] pack: the whole command, one run (above); encode_batch: only its calls are timed, in a\n"
        "      fresh process parsing the JSONL 64 MB of text at a time (not timed), fresh tokenizer, one run"
    )
    peer_peaks = {k: s2[k].peak_mib for k in ("pack2", "sp2", "hf2")}
    lines.append(
        f"  for comparison, on the {peer_bytes / MB:.1f} MB peer input (2 threads): "
        f"pack {peer_peaks['pack2']:.0f} MiB, "
        f"sentencepiece pipeline {peer_peaks['sp2']:.0f} MiB, HF pipeline {peer_peaks['hf2']:.0f} MiB"
    )
    lines.append("")

    # 4
    lines.append("4. PARITY")
    for key, val in parity.items():
        if isinstance(val, dict) and "ok" in val:
            lines.append(
                f"  bpetok verify ({key.removeprefix('verify ')}): {'OK' if val['ok'] else 'FAILED'}"
                f" - {val['output'].splitlines()[-1] if val['output'] else ''}"
            )
        elif isinstance(val, dict):
            lines.append(
                f"  {key}: "
                + ", ".join(
                    f"{k} {v:,}" if isinstance(v, int) and not isinstance(v, bool) else f"{k} {v}"
                    for k, v in val.items()
                )
            )
        else:
            lines.append(f"  {key}: {'yes' if val else 'NO'}")
    if failures:
        lines.append("  FAILURES:")
        lines += ["    " + f for f in failures]
    else:
        lines.append("  parity: OK")
    lines.append("")

    n_ok = sum(t["ok"] for t in targets)
    lines.append(f"TARGETS: {n_ok} of {len(targets)} met")
    for t in targets:
        tv = t["target"]
        if "RSS" in t["what"] and "flat" not in t["what"]:
            desc = f"{t['value']:.0f} MiB (target < {tv:g} MiB)"
        elif "flat" in t["what"]:
            desc = f"{t['value']:.2f}x (target <= {tv:g}x)"
        elif tv < 1:
            desc = f"{t['value']:.1%} (target >= {tv:.0%})"
        else:
            desc = f"{t['value']:.2f}x (target >= {tv:g}x)"
        lines.append(f"  {verdict(t['ok']):<7}{t['what']}: {desc}")
    return {"text": "\n".join(lines), "ratios": ratios, "targets": targets}


if __name__ == "__main__":
    sys.exit(main())
