#!/usr/bin/env python3
"""Encode throughput, scaling, pathological inputs and memory: bpetok vs sentencepiece vs HF tokenizers.

Run from anywhere (see benchmarks/README.md)::

    python3 benchmarks/bench_encode.py --mb 5 --repeat 3
    python3 benchmarks/bench_encode.py --json /tmp/bench.json

All engines encode the same documents in one run. Figures are medians of ``--repeat`` runs; MB are
10**6 bytes of UTF-8 input. The script exits non-zero if bpetok's ids differ from sentencepiece's
on any benchmarked document or pathological input.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
DEFAULT_PEER_MODEL = SHARED / "vocab" / "mixtral-8x7b-v0.1.model"
BUILD_SCRIPT = SHARED / "corpora" / "build.py"
MB = 1_000_000
PATHO_SIZES = (100_000, 1_000_000)
PATHO_REPEAT = 7  # timed samples per pathological input, size and engine, at least

# Targets the figures are checked against (printed as "meets" / "MISSES").
SPEEDUP_TARGETS = {"en": 15.0, "code": 15.0, "ja": 4.0}  # bpetok 1 thread / sentencepiece 1 thread
SCALING_TARGET = 1.8  # bpetok encode_batch 2 threads / 1 thread
PATHO_TARGET = 1.5  # bpetok (time per MB at 1 MB) / (time per MB at 100 KB)
MEMORY_TARGET_MB = 50.0  # RSS added by one bpetok tokenizer

Ids = list[list[int]]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- measuring ------------------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """Runs ``fn`` once with the GC off; returns (result, wall seconds, process CPU seconds)."""
    gc.collect()
    gc.disable()
    try:
        c0 = time.process_time()
        t0 = time.perf_counter()
        out = fn()
        t1 = time.perf_counter()
        c1 = time.process_time()
    finally:
        gc.enable()
    return out, t1 - t0, c1 - c0


class Series:
    """Repeated timings of one engine/mode on one document set."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.walls: list[float] = []
        self.cpus: list[float] = []

    def add(self, wall: float, cpu: float) -> None:
        self.walls.append(wall)
        self.cpus.append(cpu)

    @property
    def mb_s(self) -> float:
        return self.nbytes / MB / statistics.median(self.walls)

    @property
    def mb_per_cpu_s(self) -> float:
        return self.nbytes / MB / statistics.median(self.cpus)

    @property
    def cpu_per_wall(self) -> float:
        return statistics.median(c / w for c, w in zip(self.cpus, self.walls, strict=True))

    def as_json(self) -> dict[str, Any]:
        return {
            "mb_per_s": round(self.mb_s, 3),
            "mb_per_cpu_s": round(self.mb_per_cpu_s, 3),
            "cpu_per_wall": round(self.cpu_per_wall, 3),
            "bytes": self.nbytes,
            "wall_s": [round(w, 5) for w in self.walls],
            "cpu_s": [round(c, 5) for c in self.cpus],
        }


def rss_kb() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


# ---- corpora and models ---------------------------------------------------------------------------


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def load_corpus(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def sample(docs: Sequence[str], sizes: Sequence[int], cap_mb: float | None, seed: int = 0) -> list[int]:
    """Indices of a seeded random sample of documents of about ``cap_mb`` MB, in corpus order.

    The peers' sample is drawn from the documents bpetok encodes, so it is a subset of them.
    """
    order = list(range(len(docs)))
    if not cap_mb:
        return order
    random.Random(seed).shuffle(order)
    chosen, total = [], 0
    for i in order:
        if total >= cap_mb * MB:
            break
        chosen.append(i)
        total += sizes[i]
    return sorted(chosen)


def spm_to_hf_tokenizer(sp: Any) -> Any:
    """A ``tokenizers.Tokenizer`` for a SentencePiece BPE model, built as transformers' LlamaConverter does.

    Vocabulary from the pieces (the first three scored 0, as LlamaConverter does); merges from every
    split of each piece into two pieces of the vocabulary, ordered by the score of the merged piece
    (SentencePieceExtractor); BPE with byte fallback and fused <unk>; normalizer Prepend('▁') +
    Replace(' ', '▁'); no pre-tokenizer; Llama's decoder.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers

    n = sp.get_piece_size()
    pieces = [sp.id_to_piece(i) for i in range(n)]
    scores = [0.0 if i < 3 else sp.get_score(i) for i in range(n)]
    vocab = {piece: i for i, piece in enumerate(pieces)}
    merges: list[tuple[str, str, float]] = []
    for piece, score in zip(pieces, scores, strict=True):
        local = [
            (piece[:k], piece[k:], score)
            for k in range(1, len(piece))
            if piece[:k] in vocab and piece[k:] in vocab
        ]
        local.sort(key=lambda m: (vocab[m[0]], vocab[m[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: m[2], reverse=True)  # stable: ties keep the order above
    bpe = models.BPE(
        vocab,
        [(left, right) for left, right, _ in merges],
        unk_token=pieces[sp.unk_id()],
        fuse_unk=True,
        byte_fallback=True,
    )
    tok = Tokenizer(bpe)
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    return tok


def load_tiktoken() -> tuple[Any, str]:
    """tiktoken's cl100k_base if its vocabulary is already cached on this machine; never downloads."""
    try:
        import tiktoken
        import tiktoken.load
    except ImportError:
        return None, "tiktoken is not installed"

    def no_download(blobpath: str) -> bytes:
        raise OSError("not cached")

    tiktoken.load.read_file = no_download  # read_file_cached falls back to this on a cache miss
    try:
        return tiktoken.get_encoding("cl100k_base"), f"tiktoken {tiktoken.__version__} cl100k_base"
    except Exception:
        return None, (
            f"tiktoken {tiktoken.__version__}: cl100k_base is not cached offline (it downloads its "
            "vocabulary), so it is not benchmarked"
        )


# ---- workers (fresh subprocesses) -----------------------------------------------------------------


def run_worker(kind: str, config: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
        cfg_path = f.name
    try:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--_worker", kind, "--_config", cfg_path],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
        )
    finally:
        os.unlink(cfg_path)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {kind} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def worker_hf_single(cfg: dict[str, Any]) -> dict[str, Any]:
    """HF tokenizers with RAYON_NUM_THREADS=1 (set by the parent before this process started)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(cfg["tokenizer"])
    with open(cfg["docs"], encoding="utf-8") as f:
        corpora: dict[str, list[str]] = json.load(f)
    result: dict[str, Any] = {}
    for name, docs in corpora.items():
        nbytes = sum(map(utf8_len, docs))
        per_doc, batch = Series(nbytes), Series(nbytes)
        for _ in range(cfg["repeat"]):
            _, wall, cpu = timed(lambda docs=docs: [tok.encode(d, add_special_tokens=False) for d in docs])
            per_doc.add(wall, cpu)
            _, wall, cpu = timed(lambda docs=docs: tok.encode_batch(docs, add_special_tokens=False))
            batch.add(wall, cpu)
        result[name] = {"encode": per_doc.as_json(), "batch": batch.as_json()}
    return result


def malloc_trim() -> bool:
    """Returns freed heap memory to the OS (glibc ``malloc_trim(0)``); False where unavailable."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def reset_peak_rss() -> None:
    """Resets VmHWM to the current RSS (Linux >= 4.0), so the peak read later is that of what follows."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def worker_memory(cfg: dict[str, Any]) -> dict[str, Any]:
    """RSS added by importing an engine, loading one tokenizer and encoding documents with it.

    The tokenizer is loaded before the documents are read, so that memory freed while reading them
    cannot hide what loading takes; the encoding's share is measured from the RSS with the documents
    read, and added to the load's.
    """
    engine, model = cfg["engine"], cfg["model"]
    gc.collect()
    base = rss_kb()["VmRSS"]
    encode_one: Callable[[str], Any]
    encode_many: Callable[[list[str]], Any]
    if engine == "bpetok":
        import bpetok

        imported = rss_kb()["VmRSS"]
        tok = bpetok.Tokenizer.default() if model == "default" else bpetok.Tokenizer.from_file(model)
        loaded = rss_kb()["VmRSS"]
        encode_one = tok.encode
        encode_many = lambda ds: tok.encode_batch(ds, num_threads=2)  # noqa: E731
    elif engine == "sentencepiece":
        import sentencepiece

        imported = rss_kb()["VmRSS"]
        sp = sentencepiece.SentencePieceProcessor(model_file=model)
        loaded = rss_kb()["VmRSS"]
        encode_one = sp.encode
        encode_many = lambda ds: sp.encode(ds, num_threads=2)  # noqa: E731
    elif engine == "tokenizers":
        import tokenizers

        imported = rss_kb()["VmRSS"]
        hf = tokenizers.Tokenizer.from_file(model)
        loaded = rss_kb()["VmRSS"]
        encode_one = lambda d: hf.encode(d, add_special_tokens=False)  # noqa: E731
        encode_many = lambda ds: hf.encode_batch(ds, add_special_tokens=False)  # noqa: E731
    else:
        raise ValueError(engine)

    with open(cfg["docs"], encoding="utf-8") as f:
        docs = [json.loads(line)["text"] for line in f]
    gc.collect()
    trimmed = malloc_trim()  # drop what reading the documents freed, so encoding cannot reuse it
    reset_peak_rss()
    with_docs = rss_kb()["VmRSS"]
    for d in docs:
        encode_one(d)
    for i in range(0, len(docs), 64):
        encode_many(docs[i : i + 64])
    gc.collect()
    after = rss_kb()
    malloc_trim()
    after_trim = rss_kb()["VmRSS"]
    return {
        "import_mb": (imported - base) / 1024,
        "load_mb": (loaded - base) / 1024,
        "after_encode_mb": (loaded - base + after["VmRSS"] - with_docs) / 1024,
        "after_encode_trimmed_mb": (loaded - base + after_trim - with_docs) / 1024 if trimmed else None,
        "peak_mb": (loaded - base + after["VmHWM"] - with_docs) / 1024,
        "encoded_bytes": sum(map(utf8_len, docs)),
    }


# ---- the benchmark --------------------------------------------------------------------------------


def first_diff(a: Sequence[int], b: Sequence[int]) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def describe_diff(sp: Any, doc: str, got: Sequence[int], want: Sequence[int]) -> str:
    i = first_diff(got, want)
    lo = max(0, i - 3)
    return (
        f"first difference at token {i}: got {[sp.id_to_piece(t) for t in got[lo : i + 4]]}, "
        f"sentencepiece {[sp.id_to_piece(t) for t in want[lo : i + 4]]} "
        f"(document of {utf8_len(doc)} bytes starting {doc[:60]!r})"
    )


def pathological_inputs(n: int) -> dict[str, str]:
    rng = random.Random(1234)
    return {
        "'a' * N": "a" * n,
        "random [a-z0-9], no space": "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=n)),
        "' ' * N": " " * n,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpora", default="/tmp/corpora", help="directory of NAME.jsonl corpora")
    ap.add_argument("--sets", default="en,code,ja", help="comma-separated corpus names")
    ap.add_argument("--mb", type=float, default=None, help="cap per corpus in MB (default: all)")
    ap.add_argument(
        "--peer-mb",
        type=float,
        default=8.0,
        help="cap per corpus for the throughput comparison with sentencepiece / HF (slow: ~3-5 MB/s), "
        "a seeded sample of the bpetok documents; 0 = no cap (default 8)",
    )
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per figure; the median is reported")
    ap.add_argument(
        "--vocab",
        default=None,
        help="SentencePiece .model for all engines (default: bpetok's embedded Mixtral 8x7B vocabulary, "
        f"and {DEFAULT_PEER_MODEL} for the peers)",
    )
    ap.add_argument("--json", default=None, help="also write all figures to this JSON file")
    ap.add_argument("--skip-memory", action="store_true", help="skip the memory subprocesses")
    ap.add_argument("--_worker", help=argparse.SUPPRESS)
    ap.add_argument("--_config", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._worker:
        with open(args._config) as f:
            cfg = json.load(f)
        worker = {"hf1": worker_hf_single, "mem": worker_memory}[args._worker]
        print(json.dumps(worker(cfg)))
        return 0
    return run(args)


def run(args: argparse.Namespace) -> int:
    if args.repeat < 1:
        sys.exit("--repeat must be >= 1")
    # HF tokenizers sizes its rayon pool from RAYON_NUM_THREADS when it first runs in parallel; it
    # must be set before tokenizers is imported. Its 1-thread figures come from a subprocess with
    # RAYON_NUM_THREADS=1 (see worker_hf_single).
    os.environ["RAYON_NUM_THREADS"] = "2"
    os.environ["TOKENIZERS_PARALLELISM"] = "true"

    import bpetok
    import sentencepiece
    import tokenizers

    corpora_dir = Path(args.corpora)
    sets = [s for s in args.sets.split(",") if s]
    missing = [s for s in sets if not (corpora_dir / f"{s}.jsonl").is_file()]
    if missing:
        sys.exit(
            f"corpora {missing} not found in {corpora_dir}. Build them with:\n"
            f"  cd {REPO_ROOT} && python3 ../shared/corpora/build.py {corpora_dir} --install\n"
            f"(the script is {BUILD_SCRIPT}; --install apt-gets the Debian packages it reads)"
        )

    if args.vocab:
        peer_model = Path(args.vocab)
        if not peer_model.is_file():
            sys.exit(f"--vocab {peer_model}: no such file")
        tok = bpetok.Tokenizer.from_file(peer_model)
        bpetok_vocab = str(peer_model)
    else:
        peer_model = DEFAULT_PEER_MODEL
        tok = bpetok.Tokenizer.default()
        bpetok_vocab = "embedded Mixtral 8x7B (Tokenizer.default())"
    if not peer_model.is_file():
        sys.exit(f"{peer_model} not found; pass --vocab PATH to a SentencePiece .model")
    same_model = tok.model_bytes == peer_model.read_bytes()
    sp = sentencepiece.SentencePieceProcessor(model_file=str(peer_model))
    hf = spm_to_hf_tokenizer(sp)
    tik, tik_note = load_tiktoken()

    tmp = tempfile.TemporaryDirectory(prefix="bench_encode_")
    hf_path = os.path.join(tmp.name, "tokenizer.json")
    hf.save(hf_path)

    # ---- documents
    docs: dict[str, list[str]] = {}
    bench_idx: dict[str, list[int]] = {}
    peer_idx: dict[str, list[int]] = {}
    sizes: dict[str, list[int]] = {}
    for name in sets:
        all_docs = load_corpus(corpora_dir / f"{name}.jsonl")
        all_sizes = [utf8_len(d) for d in all_docs]
        chosen = sample(all_docs, all_sizes, args.mb)
        docs[name] = [all_docs[i] for i in chosen]
        sizes[name] = [all_sizes[i] for i in chosen]
        peer_cap = args.peer_mb if args.peer_mb and (not args.mb or args.peer_mb < args.mb) else None
        bench_idx[name] = list(range(len(chosen)))
        peer_idx[name] = sample(docs[name], sizes[name], peer_cap)

    def nbytes(name: str, idx: Sequence[int]) -> int:
        return sum(sizes[name][i] for i in idx)

    capped = any(len(peer_idx[n]) < len(bench_idx[n]) for n in sets)
    load0 = os.getloadavg()

    header = [
        "bpetok encode benchmark",
        f"  bpetok {bpetok.__version__}, sentencepiece {sentencepiece.__version__}, "
        f"tokenizers {tokenizers.__version__}; Python {platform.python_version()}, "
        f"{len(os.sched_getaffinity(0))} CPUs usable, load average at start {load0[0]:.2f}",
        f"  bpetok imported from {Path(bpetok.__file__).parent}",
        f"  bpetok vocab: {bpetok_vocab}",
        f"  peers' vocab: {peer_model}" + ("" if same_model else "  (NOTE: not the same bytes as bpetok's)"),
        f"  corpora: {corpora_dir}; medians of {args.repeat} runs; MB = 10^6 bytes of UTF-8 input",
    ]
    ncpu = len(os.sched_getaffinity(0))
    if load0[0] > 0.5:
        header.append(
            f"  WARNING: load average {load0[0]:.2f} at start on {ncpu} CPUs: other processes compete for "
            "the CPUs, so figures are noisy and 2-thread figures understate scaling"
        )
    for name in sets:
        b, p = nbytes(name, bench_idx[name]), nbytes(name, peer_idx[name])
        line = f"  {name}: {len(bench_idx[name])} documents, {b / MB:.1f} MB"
        if len(peer_idx[name]) < len(bench_idx[name]):
            line += f"; peers timed on a seeded sample of {len(peer_idx[name])} documents, {p / MB:.1f} MB"
        header.append(line)
    if capped:
        header.append(
            "  (sentencepiece and HF encode at ~3-5 MB/s, so their input is capped by --peer-mb; all "
            "ratios compare engines on that same sample; --peer-mb 0 times them on everything)"
        )
    log(
        "benchmarking "
        + ", ".join(
            f"{n} ({nbytes(n, bench_idx[n]) / MB:.1f} MB, peers {nbytes(n, peer_idx[n]) / MB:.1f} MB)"
            for n in sets
        )
        + f", {args.repeat} repeats ..."
    )

    # ---- throughput, interleaving the engines in each repeat
    runners: dict[str, Callable[[list[str]], Any]] = {
        "sp.encode": lambda ds: [sp.encode(d) for d in ds],
        "sp.batch1": lambda ds: sp.encode(ds, num_threads=1),
        "sp.batch2": lambda ds: sp.encode(ds, num_threads=2),
        "bp.encode": lambda ds: [tok.encode(d) for d in ds],
        # A tokenizer loaded just before the run (load not timed): its segment caches start from the
        # model's seed only, as in a process that encodes these documents once.
        "bp.cold": lambda ds: [cold[0].encode(d) for d in ds],
        "bp.batch1": lambda ds: tok.encode_batch(ds, num_threads=1),
        "bp.batch2": lambda ds: tok.encode_batch(ds, num_threads=2),
        "hf.batch2": lambda ds: hf.encode_batch(ds, add_special_tokens=False),
    }
    if tik is not None:
        runners["tt.encode"] = lambda ds: [tik.encode_ordinary(d) for d in ds]
        runners["tt.batch1"] = lambda ds: tik.encode_ordinary_batch(ds, num_threads=1)
        runners["tt.batch2"] = lambda ds: tik.encode_ordinary_batch(ds, num_threads=2)
    bp_runners = ["bp.encode", "bp.cold", "bp.batch1", "bp.batch2"]
    cold = [tok]

    def prepare(key: str) -> None:
        if key == "bp.cold":
            cold[0] = bpetok.Tokenizer.from_bytes(tok.model_bytes)
            gc.collect()

    series: dict[str, dict[str, Series]] = {}
    series_all: dict[str, dict[str, Series]] = {}
    parity_docs = parity_bytes = 0
    hf_agree: dict[str, tuple[int, int, list[str]]] = {}
    failures: list[str] = []
    for name in sets:
        pdocs = [docs[name][i] for i in peer_idx[name]]
        pbytes = nbytes(name, peer_idx[name])
        series[name] = {key: Series(pbytes) for key in runners}
        log(f"[{name}] timing {len(runners)} engine/modes x {args.repeat} on {pbytes / MB:.1f} MB ...")
        ref: Ids = []
        for rep in range(args.repeat):
            for key, fn in runners.items():
                prepare(key)
                out, wall, cpu = timed(lambda fn=fn, pdocs=pdocs: fn(pdocs))
                series[name][key].add(wall, cpu)
                if rep > 0:
                    continue
                if key == "sp.encode":
                    ref = out
                elif key.startswith(("sp.", "bp.")):
                    bad = [i for i in range(len(pdocs)) if out[i] != ref[i]]
                    if bad:
                        i = bad[0]
                        failures.append(
                            f"{name}: {key} differs from sentencepiece on {len(bad)} of {len(pdocs)} "
                            f"documents; {describe_diff(sp, pdocs[i], out[i], ref[i])}"
                        )
                elif key == "hf.batch2":
                    ids = [e.ids for e in out]
                    bad = [i for i in range(len(pdocs)) if ids[i] != ref[i]]
                    hf_agree[name] = (
                        len(pdocs) - len(bad),
                        len(pdocs),
                        [describe_diff(sp, pdocs[i], ids[i], ref[i]) for i in bad[:3]],
                    )
                del out
        parity_docs += len(pdocs)
        parity_bytes += pbytes
        del ref

        # bpetok on all the documents, when the peers had a sample; parity on the rest too
        rest = sorted(set(bench_idx[name]) - set(peer_idx[name]))
        if rest:
            all_docs = docs[name]
            abytes = nbytes(name, bench_idx[name])
            series_all[name] = {key: Series(abytes) for key in bp_runners}
            log(f"[{name}] timing bpetok on all {abytes / MB:.1f} MB ...")
            rest_ref = sp.encode([all_docs[i] for i in rest], num_threads=2)
            for rep in range(args.repeat):
                for key in bp_runners:
                    prepare(key)
                    out, wall, cpu = timed(lambda key=key, all_docs=all_docs: runners[key](all_docs))
                    series_all[name][key].add(wall, cpu)
                    if rep == 0:
                        bad = [i for j, i in enumerate(rest) if out[i] != rest_ref[j]]
                        if bad:
                            i = bad[0]
                            want = rest_ref[rest.index(i)]
                            failures.append(
                                f"{name}: {key} differs from sentencepiece on {len(bad)} more documents; "
                                f"{describe_diff(sp, all_docs[i], out[i], want)}"
                            )
                    del out
            parity_docs += len(rest)
            parity_bytes += nbytes(name, rest)
            del rest_ref

    # ---- HF single-thread, in a subprocess with RAYON_NUM_THREADS=1
    log("HF tokenizers 1-thread runs (subprocess, RAYON_NUM_THREADS=1) ...")
    peer_docs_path = os.path.join(tmp.name, "peer_docs.json")
    with open(peer_docs_path, "w", encoding="utf-8") as f:
        json.dump({n: [docs[n][i] for i in peer_idx[n]] for n in sets}, f, ensure_ascii=False)
    hf1 = run_worker(
        "hf1",
        {"tokenizer": hf_path, "docs": peer_docs_path, "repeat": args.repeat},
        env={"RAYON_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "true"},
    )
    for name in sets:
        for mode in ("encode", "batch"):
            s = Series(hf1[name][mode]["bytes"])
            for wall, cpu in zip(hf1[name][mode]["wall_s"], hf1[name][mode]["cpu_s"], strict=True):
                s.add(wall, cpu)
            series[name]["hf." + {"encode": "encode", "batch": "batch1"}[mode]] = s

    # ---- pathological inputs
    log("pathological inputs ...")
    patho_engines: dict[str, Callable[[str], Any]] = {
        "bpetok": tok.encode,
        "sentencepiece": sp.encode,
        "HF tokenizers": lambda s: hf.encode(s, add_special_tokens=False).ids,
    }
    patho: dict[str, dict[str, dict[int, float]]] = {}
    inputs = {n: pathological_inputs(n) for n in PATHO_SIZES}
    for label in inputs[PATHO_SIZES[0]]:
        for engine, fn in patho_engines.items():
            for n in PATHO_SIZES:
                text = inputs[n][label]
                if fn(text) != sp.encode(text):
                    msg = f"pathological {label} N={n}: {engine} differs from sentencepiece"
                    if engine == "bpetok":
                        failures.append(msg)
                    else:
                        log("note: " + msg)
            # The sizes take turns in each repeat, so that the 1 MB / 100 KB ratio compares
            # timings of the same moment of a shared machine; at least PATHO_REPEAT of each.
            times: dict[int, list[float]] = {n: [] for n in PATHO_SIZES}
            for _ in range(max(args.repeat, PATHO_REPEAT)):
                for n in PATHO_SIZES:
                    calls = max(1, MB // n)  # each timed sample encodes >= 1 MB in total
                    text = inputs[n][label]
                    _, wall, _ = timed(lambda fn=fn, text=text, calls=calls: [fn(text) for _ in range(calls)])
                    times[n].append(wall / (calls * n / MB))
            for n in PATHO_SIZES:
                patho.setdefault(label, {}).setdefault(engine, {})[n] = statistics.median(times[n])

    # ---- memory, each engine in a fresh subprocess
    memory: dict[str, dict[str, float]] = {}
    if not args.skip_memory:
        log("memory (fresh subprocesses) ...")
        mem_docs_path = os.path.join(tmp.name, "memory_docs.jsonl")
        with open(mem_docs_path, "w", encoding="utf-8") as f:
            for n in sets:  # all the benchmarked documents: caches may grow with what was encoded
                for d in docs[n]:
                    f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
        mem_models = {
            "bpetok": "default" if not args.vocab else str(peer_model),
            "sentencepiece": str(peer_model),
            "tokenizers": hf_path,
        }
        for engine, model in mem_models.items():
            memory[engine] = run_worker(
                "mem",
                {"engine": engine, "model": model, "docs": mem_docs_path},
                env={"RAYON_NUM_THREADS": "2"},
            )
    load1 = os.getloadavg()

    # ---- report
    report = format_report(header, sets, series, series_all, hf_agree, patho, memory, tik_note, args, load1)
    print(report["text"])
    if failures:
        print("\nPARITY FAILURES (bpetok != sentencepiece):")
        for f_ in failures:
            print("  " + f_)
    else:
        print(
            f"\nParity: bpetok ids == sentencepiece ids on all {parity_docs} benchmarked documents "
            f"({parity_bytes / MB:.1f} MB) and on the {len(PATHO_SIZES) * 3} pathological inputs: OK"
        )

    if args.json:
        data = {
            "config": {
                "corpora": str(corpora_dir),
                "sets": sets,
                "mb": args.mb,
                "peer_mb": args.peer_mb,
                "repeat": args.repeat,
                "bpetok_vocab": bpetok_vocab,
                "peer_vocab": str(peer_model),
                "same_model_bytes": same_model,
                "versions": {
                    "bpetok": bpetok.__version__,
                    "sentencepiece": sentencepiece.__version__,
                    "tokenizers": tokenizers.__version__,
                    "python": platform.python_version(),
                },
                "cpus": len(os.sched_getaffinity(0)),
                "loadavg_start_end": [load0[0], load1[0]],
                "tiktoken": tik_note,
            },
            "corpora": {
                n: {
                    "docs": len(bench_idx[n]),
                    "bytes": nbytes(n, bench_idx[n]),
                    "peer_docs": len(peer_idx[n]),
                    "peer_bytes": nbytes(n, peer_idx[n]),
                }
                for n in sets
            },
            "throughput_peer_sample": {n: {k: s.as_json() for k, s in series[n].items()} for n in sets},
            "throughput_bpetok_all": {
                n: {k: s.as_json() for k, s in series_all[n].items()} for n in series_all
            },
            "ratios": report["ratios"],
            "hf_agreement": {
                n: {"agree": a, "docs": t, "examples": ex} for n, (a, t, ex) in hf_agree.items()
            },
            "pathological_s_per_mb": {
                label: {e: {str(n): v for n, v in d.items()} for e, d in per.items()}
                for label, per in patho.items()
            },
            "memory_mb": memory,
            "parity": {"docs": parity_docs, "bytes": parity_bytes, "failures": failures},
            "targets": report["targets"],
        }
        with open(args.json, "w") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
        print(f"figures written to {args.json}")
    tmp.cleanup()
    return 1 if failures else 0


# ---- report ---------------------------------------------------------------------------------------

ROWS = [
    ("bp.encode", "bpetok", "encode(doc) per document", 1),
    ("bp.cold", "bpetok", "encode(doc), fresh tokenizer [e]", 1),
    ("bp.batch1", "bpetok", "encode_batch(docs, num_threads=1)", 1),
    ("sp.encode", "sentencepiece", "encode(doc) per document", 1),
    ("sp.batch1", "sentencepiece", "encode(docs, num_threads=1)", 1),
    ("hf.encode", "HF tokenizers", "encode(doc) per document [a]", 1),
    ("hf.batch1", "HF tokenizers", "encode_batch(docs) [a]", 1),
    ("tt.encode", "tiktoken cl100k", "encode_ordinary(doc) [c]", 1),
    ("tt.batch1", "tiktoken cl100k", "encode_ordinary_batch(docs, 1) [c]", 1),
    ("bp.batch2", "bpetok", "encode_batch(docs, num_threads=2)", 2),
    ("sp.batch2", "sentencepiece", "encode(docs, num_threads=2)", 2),
    ("hf.batch2", "HF tokenizers", "encode_batch(docs) [b]", 2),
    ("tt.batch2", "tiktoken cl100k", "encode_ordinary_batch(docs, 2) [c]", 2),
]


def fmt_opt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def format_report(
    header: list[str],
    sets: list[str],
    series: dict[str, dict[str, Series]],
    series_all: dict[str, dict[str, Series]],
    hf_agree: dict[str, tuple[int, int, list[str]]],
    patho: dict[str, dict[str, dict[int, float]]],
    memory: dict[str, dict[str, float]],
    tik_note: str,
    args: argparse.Namespace,
    load1: tuple[float, float, float],
) -> dict[str, Any]:
    lines = [*header, f"  load average at end {load1[0]:.2f}", ""]
    targets: list[dict[str, Any]] = []
    col = 17

    # throughput
    lines.append(
        "THROUGHPUT  MB/s of input (median); [x.xx] = process CPU time / wall time: ~1.0 for one busy "
        "thread, ~2.0 for two, lower = the run waited for a CPU"
    )
    head = f"{'engine':<16}{'mode':<38}{'thr':>3}  " + "".join(f"{n:>{col}}" for n in sets)
    lines += [head, "-" * len(head)]
    for key, engine, mode, threads in ROWS:
        if key not in series[sets[0]]:
            continue
        cells = "".join(
            f"{f'{series[n][key].mb_s:8.2f} [{series[n][key].cpu_per_wall:4.2f}]':>{col}}" for n in sets
        )
        lines.append(f"{engine:<16}{mode:<38}{threads:>3}  {cells}")
        if key == "tt.batch1":
            lines.append("")
        if key == "hf.batch1" and "tt.encode" not in series[sets[0]]:
            lines.append("")
    if series_all:
        lines.append("bpetok on all the documents (not only the peers' sample):")
        for key, engine, mode, threads in ROWS:
            if not key.startswith("bp."):
                continue
            cells = "".join(
                f"{f'{series_all[n][key].mb_s:8.2f} [{series_all[n][key].cpu_per_wall:4.2f}]':>{col}}"
                if n in series_all
                else f"{'(same)':>{col}}"
                for n in sets
            )
            lines.append(f"{engine:<16}{mode:<38}{threads:>3}  {cells}")
    lines += [
        "  [e] a tokenizer loaded just before each timed run (load not timed): segment caches hold only "
        "the vocabulary's pieces, as in one pass over new text; the other bpetok rows reuse one tokenizer",
        "  [a] HF 1-thread rows: a fresh subprocess with RAYON_NUM_THREADS=1 "
        "(same tokenizer.json, same documents)",
        "  [b] HF 2-thread row: this process, RAYON_NUM_THREADS=2 and TOKENIZERS_PARALLELISM=true set "
        "before importing tokenizers",
        "      HF times cover the encode call returning Encoding objects (reading .ids is not timed)",
    ]
    if "tt.encode" in series[sets[0]]:
        lines.append(
            "  [c] tiktoken uses its own cl100k_base vocabulary: a different tokenization, "
            "shown only as context"
        )
    else:
        lines.append(
            "  tiktoken: not comparable (it cannot load a SentencePiece vocabulary); "
            + tik_note.split(": ", 1)[-1]
        )
    agree_total = sum(a for a, _, _ in hf_agree.values())
    docs_total = sum(t for _, t, _ in hf_agree.values())
    lines.append(
        "  HF tokenizers (LlamaConverter-style BPE) ids == sentencepiece ids on "
        + ", ".join(f"{n} {hf_agree[n][0]}/{hf_agree[n][1]}" for n in sets)
        + f" documents ({100 * agree_total / max(1, docs_total):.1f}%)"
    )
    for n in sets:
        for ex in hf_agree[n][2]:
            lines.append(f"    HF differs on {n}: {ex}")
    lines.append("")

    # ratios
    ratios: dict[str, dict[str, float]] = {}

    def ratio(a: str, b: str, n: str, by_cpu: bool = False) -> float:
        if by_cpu:
            return series[n][a].mb_per_cpu_s / series[n][b].mb_per_cpu_s
        return series[n][a].mb_s / series[n][b].mb_s

    ratio_rows = [
        ("bpetok / sentencepiece, 1 thread, encode(doc)", "bp.encode", "sp.encode", "speedup"),
        ("  the same with a fresh tokenizer [e]", "bp.cold", "sp.encode", "speedup"),
        ("bpetok / sentencepiece, 1 thread, batch", "bp.batch1", "sp.batch1", "speedup"),
        ("  the same by CPU time, encode(doc) [d]", "bp.encode", "sp.encode", "cpu"),
        ("  the same by CPU time, batch [d]", "bp.batch1", "sp.batch1", "cpu"),
        ("bpetok / sentencepiece, 2 threads, batch", "bp.batch2", "sp.batch2", None),
        ("bpetok 2 threads / 1 thread (encode_batch)", "bp.batch2", "bp.batch1", "scaling"),
        ("sentencepiece 2 threads / 1 thread", "sp.batch2", "sp.batch1", None),
        ("HF tokenizers 2 threads / 1 thread", "hf.batch2", "hf.batch1", None),
        ("bpetok / HF, 1 thread, encode(doc)", "bp.encode", "hf.encode", None),
        ("bpetok / HF, 1 thread, batch", "bp.batch1", "hf.batch1", None),
        ("bpetok / HF, 2 threads, batch", "bp.batch2", "hf.batch2", None),
    ]
    lines.append("RATIOS  (throughput / throughput, same documents)")
    head = f"{'':<48}" + "".join(f"{n:>9}" for n in sets) + "   target"
    lines += [head, "-" * len(head)]
    for label, a, b, kind in ratio_rows:
        vals = {n: ratio(a, b, n, by_cpu=kind == "cpu") for n in sets}
        ratios[label] = {n: round(v, 3) for n, v in vals.items()}
        cells = "".join(f"{vals[n]:8.2f}x" for n in sets)
        tgt = ""
        if kind == "speedup":
            parts = []
            for n in sets:
                if n in SPEEDUP_TARGETS:
                    ok = vals[n] >= SPEEDUP_TARGETS[n]
                    parts.append(f"{n} >={SPEEDUP_TARGETS[n]:g}x {verdict(ok)}")
                    targets.append(
                        {"what": f"{label} [{n}]", "value": vals[n], "target": SPEEDUP_TARGETS[n], "ok": ok}
                    )
            tgt = "; ".join(parts)
        elif kind == "scaling":
            oks = [vals[n] >= SCALING_TARGET for n in sets]
            for n in sets:
                ok = vals[n] >= SCALING_TARGET
                targets.append(
                    {"what": f"{label} [{n}]", "value": vals[n], "target": SCALING_TARGET, "ok": ok}
                )
            tgt = f">={SCALING_TARGET}x " + (
                "meets"
                if all(oks)
                else "MISSES on " + ",".join(n for n, ok in zip(sets, oks, strict=True) if not ok)
            )
        lines.append(f"{label:<48}{cells}   {tgt}".rstrip())
    lines.append(
        "  [d] MB per CPU-second instead of per wall-second: a cross-check for 1-thread runs on a busy "
        "machine (targets use wall time)"
    )
    lines.append("")

    # pathological
    lines.append("PATHOLOGICAL INPUTS  ms per MB of input (median), 1 thread, single encode call")
    head = f"{'input':<28}{'engine':<16}{'N=100 KB':>10}{'N=1 MB':>10}{'1MB/100KB':>11}   target"
    lines += [head, "-" * len(head)]
    patho_ratios: dict[str, dict[str, float]] = {}
    small, large = PATHO_SIZES
    for label, per in patho.items():
        for i, (engine, t) in enumerate(per.items()):
            r = t[large] / t[small]
            patho_ratios.setdefault(label, {})[engine] = round(r, 3)
            tgt = ""
            if engine == "bpetok":
                ok = r <= PATHO_TARGET
                tgt = f"<={PATHO_TARGET}x {verdict(ok)}"
                targets.append(
                    {"what": f"pathological {label}", "value": r, "target": PATHO_TARGET, "ok": ok}
                )
            lines.append(
                f"{label if i == 0 else '':<28}{engine:<16}{t[small] * 1e3:10.1f}{t[large] * 1e3:10.1f}"
                f"{r:10.2f}x   {tgt}"
            )
    lines.append("")
    ratios["pathological (1 MB / 100 KB time per MB)"] = {
        k: v.get("bpetok", 0.0) for k, v in patho_ratios.items()
    }

    # memory
    if memory:
        mb = memory["bpetok"]["encoded_bytes"] / MB
        lines.append(
            f"MEMORY  RSS added (MB, VmRSS) in a fresh process, over its RSS before the import; "
            f"encoding = {mb:.1f} MB of the documents, one by one then in batches of 64 on 2 threads"
        )
        head = f"{'engine':<16}{'import':>9}{'+ load':>9}{'+ encode':>10}{'trimmed':>9}{'peak':>9}   target"
        lines += [head, "-" * len(head)]
        for engine, m in memory.items():
            tgt = ""
            if engine == "bpetok":
                worst = max(m["load_mb"], m["after_encode_mb"])
                ok = worst < MEMORY_TARGET_MB
                tgt = f"<{MEMORY_TARGET_MB:g} MB {verdict(ok)}"
                targets.append(
                    {"what": "bpetok RSS added", "value": worst, "target": MEMORY_TARGET_MB, "ok": ok}
                )
            lines.append(
                f"{engine:<16}{m['import_mb']:9.1f}{m['load_mb']:9.1f}{m['after_encode_mb']:10.1f}"
                f"{fmt_opt(m['after_encode_trimmed_mb']):>9}{m['peak_mb']:9.1f}   {tgt}"
            )
        lines.append(
            "  (all include the import. The tokenizer is loaded before the documents are read; "
            "+ encode, trimmed and peak add the growth\n   of RSS / VmHWM while encoding, over the RSS "
            "with the documents read (after malloc_trim), to + load; result lists are dropped.\n"
            "   + encode counts memory freed but kept by the C allocator; trimmed = after glibc "
            "malloc_trim(0), what is still in use.)"
        )
        lines.append("")

    n_ok = sum(t["ok"] for t in targets)
    lines.append(f"TARGETS: {n_ok} of {len(targets)} met")
    for t in targets:
        if not t["ok"]:
            lines.append(f"  MISSES {t['what']}: {t['value']:.2f} (target {t['target']:g})")
    return {"text": "\n".join(lines), "ratios": ratios, "targets": targets}


if __name__ == "__main__":
    sys.exit(main())
