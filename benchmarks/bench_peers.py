#!/usr/bin/env python3
"""bpetok against the exact peers (gigatoken, fastokens, kitoken), HF tokenizers and sentencepiece.

Run from anywhere (see benchmarks/README.md)::

    python3 benchmarks/bench_peers.py --mb 3 --repeat 3 --json /tmp/peers.json
    python3 benchmarks/bench_peers.py --startup
    python3 benchmarks/bench_peers.py --huge 200

For each corpus three disjoint seeded samples of ``--mb`` MB of whole documents are drawn: the cold
set, the warm-up set and the warm set. Every engine runs each of its modes in its own fresh subprocess,
pinned with ``taskset`` to one core (``-c 0``) or two (``-c 0,1``), which encodes the cold set (the
"fresh process" figure: cold caches), then the warm-up set (untimed), then the warm set (the "warm"
figure: caches warm with the corpus's language, text not seen before) and then the warm set again
``--repeat`` times (the "again" figure, median: caches hold this very text, which flatters engines with
segment caches). Figures are medians over ``--fresh`` such processes; MB are 10**6 bytes of UTF-8 input.

The ids of every pass that is checked (fresh, warm, the last again) must equal sentencepiece's; an
engine whose ids differ on a corpus is reported as not exact there and is not a candidate for "fastest
exact peer" on it. The script exits with status 1 only if bpetok's ids differ from sentencepiece's.

``--startup`` measures import, load and the first calls instead. ``--huge MB`` measures one document of
MB MB (the en, code and ja corpora's documents joined, repeated to that size): bpetok's
``encode_batch_to_numpy([text], num_threads=N)`` for N = 1 and 2, each in its own fresh process pinned
to CPUs 0 and 1; it exits with status 1 if the ids of any call differ from those of the first.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_encode import load_corpus, spm_to_hf_tokenizer, timed, utf8_len

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
DEFAULT_MODEL = SHARED / "vocab" / "mixtral-8x7b-v0.1.model"
MB = 1_000_000
SEED = 0
SETS = ["en", "code", "ja", "zh", "multi"]
STARTUP_TEXT = "The quick brown fox jumps over the lazy dog. Der Fuchs. 日本語のテキスト。中文文本。"

# Each engine: (module it needs, what the report calls it). The modes are in MODES below.
ENGINES = {
    "bpetok": ("bpetok", "bpetok"),
    "gigatoken": ("gigatoken", "gigatoken"),
    "fastokens": ("fastokens", "fastokens"),
    "kitoken": ("kitoken", "kitoken"),
    "hf": ("tokenizers", "HF tokenizers"),
    "sentencepiece": ("sentencepiece", "sentencepiece"),
}

# (engine, mode) -> {cores: what the timed call is}. On 1 core an engine runs its per-document encode
# and its batch API on one thread; on 2 cores its parallel batch API on two threads.
MODES: dict[tuple[str, str], dict[int, str]] = {
    ("bpetok", "encode"): {1: "[tok.encode(d) for d in docs]"},
    ("bpetok", "batch"): {1: "tok.encode_batch(docs, num_threads=1)", 2: "... num_threads=2"},
    ("bpetok", "batch-np"): {1: "tok.encode_batch_to_numpy(docs, num_threads=1)", 2: "... num_threads=2"},
    ("gigatoken", "encode"): {1: "[tok.encode(d) for d in docs] (numpy arrays)"},
    ("gigatoken", "batch"): {
        1: "tok.encode_batch_list(docs, parallel=False)",
        2: "tok.encode_batch_list(docs, parallel=True) [r]",
    },
    ("gigatoken", "batch-ak"): {
        1: "tok.encode_batch(docs, parallel=False) (awkward Array)",
        2: "tok.encode_batch(docs, parallel=True) [r]",
    },
    ("fastokens", "encode"): {1: "[tok.encode(d).ids for d in docs] [f]"},
    ("fastokens", "batch"): {1: "[e.ids for e in tok.encode_batch(docs)] [f]", 2: "the same [f]"},
    ("fastokens", "batch-flat"): {1: "tok.encode_batch_flat(docs) (uint32 bytes) [f]", 2: "the same [f]"},
    ("kitoken", "encode"): {1: "[tok.encode(d) for d in docs]"},
    ("kitoken", "batch"): {
        1: "tok.encode_all(docs)",
        2: "tok.encode_all(half) on 2 Python threads [k]",
    },
    ("hf", "encode"): {1: "[tok.encode(d).ids for d in docs] [h]"},
    ("hf", "batch"): {1: "[e.ids for e in tok.encode_batch_fast(docs)] [h]", 2: "the same [h]"},
    ("sentencepiece", "encode"): {1: "[sp.encode(d) for d in docs]"},
    ("sentencepiece", "batch"): {1: "sp.encode(docs, num_threads=1)", 2: "sp.encode(docs, num_threads=2)"},
}
NOTES = [
    "[r] gigatoken's process-wide rayon pool: RAYON_NUM_THREADS=2 (it sizes itself to the CPUs the process"
    " may use)",
    "[f] fastokens: FASTOKENS_BPE_THREADS and RAYON_NUM_THREADS = the number of cores (1 or 2)",
    "[k] kitoken has no parallel API: encode_all releases the GIL, so the 2-core row runs it on two"
    " Python threads, each on half of the documents (split by bytes), the results put back in order",
    "[h] HF: RAYON_NUM_THREADS = the number of cores, TOKENIZERS_PARALLELISM=true on 2; encode_batch_fast"
    " (no offsets; encode_batch before tokenizers 0.21); times include reading .ids (every engine's time"
    " ends with the ids in Python's hands)",
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- worker: one engine, one mode, one corpus, in a fresh pinned process --------------------------


def load_engine(engine: str, model: str, tokenizer_json: str) -> Any:
    if engine == "bpetok":
        import bpetok

        return bpetok.Tokenizer.default() if model == "embedded" else bpetok.Tokenizer.from_file(model)
    if engine == "gigatoken":
        import gigatoken

        return gigatoken.Tokenizer.from_sentencepiece(model)
    if engine == "fastokens":
        import fastokens

        return fastokens.Tokenizer.from_file(tokenizer_json)
    if engine == "kitoken":
        import kitoken

        return kitoken.Kitoken.from_sentencepiece_file(model)
    if engine == "hf":
        import tokenizers

        return tokenizers.Tokenizer.from_file(tokenizer_json)
    if engine == "sentencepiece":
        import sentencepiece

        return sentencepiece.SentencePieceProcessor(model_file=model)
    raise ValueError(engine)


def halves(docs: Sequence[str]) -> tuple[list[int], list[int]]:
    """Two sets of document indices of about equal bytes (largest first to the lighter), each sorted."""
    parts: tuple[list[int], list[int]] = ([], [])
    load = [0, 0]
    for i in sorted(range(len(docs)), key=lambda i: -len(docs[i])):
        k = 0 if load[0] <= load[1] else 1
        parts[k].append(i)
        load[k] += len(docs[i])
    return sorted(parts[0]), sorted(parts[1])


def make_call(engine: str, mode: str, cores: int, tok: Any, docs: list[str]) -> Callable[[], Any]:
    """The timed call: encodes every document and returns the ids as the engine hands them over."""
    par = cores > 1
    if engine == "bpetok":
        if mode == "encode":
            return lambda: [tok.encode(d) for d in docs]
        if mode == "batch":
            return lambda: tok.encode_batch(docs, num_threads=cores)
        return lambda: tok.encode_batch_to_numpy(docs, num_threads=cores)
    if engine == "gigatoken":
        if mode == "encode":
            return lambda: [tok.encode(d) for d in docs]
        if mode == "batch":
            return lambda: tok.encode_batch_list(docs, parallel=par)
        return lambda: tok.encode_batch(docs, parallel=par)
    if engine == "fastokens":
        if mode == "encode":
            return lambda: [tok.encode(d).ids for d in docs]
        if mode == "batch":
            return lambda: [e.ids for e in tok.encode_batch(docs)]
        return lambda: tok.encode_batch_flat(docs)
    if engine == "kitoken":
        if mode == "encode":
            return lambda: [tok.encode(d, False) for d in docs]
        if not par:
            return lambda: tok.encode_all(docs, False)
        parts = halves(docs)
        texts = [[docs[i] for i in part] for part in parts]
        pool = ThreadPoolExecutor(2)

        def two_threads() -> list[list[int]]:
            futures = [pool.submit(tok.encode_all, t, False) for t in texts]
            out: list[Any] = [None] * len(docs)
            for part, fut in zip(parts, futures, strict=True):
                for i, ids in zip(part, fut.result(), strict=True):
                    out[i] = ids
            return out

        return two_threads
    if engine == "hf":
        if mode == "encode":
            return lambda: [tok.encode(d, add_special_tokens=False).ids for d in docs]
        batch = getattr(tok, "encode_batch_fast", tok.encode_batch)  # _fast: no offsets (>= 0.21)
        return lambda: [e.ids for e in batch(docs, add_special_tokens=False)]
    if engine == "sentencepiece":
        if mode == "encode":
            return lambda: [tok.encode(d) for d in docs]
        return lambda: tok.encode(docs, num_threads=cores)
    raise ValueError(engine)


def as_flat(engine: str, mode: str, out: Any) -> tuple[Any, Any]:
    """Any mode's output as (all ids, one uint32 array; token count per document, int64)."""
    import numpy as np

    if engine == "bpetok" and mode == "batch-np":
        ids, offsets = out
        return np.asarray(ids, dtype=np.uint32), np.diff(np.asarray(offsets, dtype=np.int64))
    if engine == "fastokens" and mode == "batch-flat":
        ids, offsets = out
        return np.frombuffer(ids, dtype="<u4").astype(np.uint32), np.diff(
            np.frombuffer(offsets, dtype="<u8").astype(np.int64)
        )
    if engine == "gigatoken" and mode == "batch-ak":
        import awkward as ak

        return ak.to_numpy(ak.flatten(out)).astype(np.uint32), ak.to_numpy(ak.num(out)).astype(np.int64)
    lengths = np.fromiter((len(x) for x in out), dtype=np.int64, count=len(out))
    flat = np.concatenate([np.asarray(x, dtype=np.uint32) for x in out]) if len(out) else np.zeros(0)
    return flat.astype(np.uint32), lengths


def compare(got: tuple[Any, Any], ref_ids: Any, ref_len: Any, limit: int = 3) -> dict[str, Any]:
    """Documents whose ids differ from the reference, with the first few differences."""
    import numpy as np

    ids, lengths = got
    if len(lengths) == len(ref_len) and np.array_equal(lengths, ref_len) and np.array_equal(ids, ref_ids):
        return {"differ": 0, "examples": []}
    if len(lengths) != len(ref_len):
        return {"differ": len(ref_len), "examples": [f"{len(lengths)} outputs for {len(ref_len)} documents"]}
    starts, ref_starts = np.cumsum(lengths) - lengths, np.cumsum(ref_len) - ref_len
    differ, examples = 0, []
    for d in range(len(ref_len)):
        a = ids[starts[d] : starts[d] + lengths[d]]
        b = ref_ids[ref_starts[d] : ref_starts[d] + ref_len[d]]
        if len(a) == len(b) and np.array_equal(a, b):
            continue
        differ += 1
        if len(examples) < limit:
            n = min(len(a), len(b))
            at = int(np.argmax(a[:n] != b[:n])) if n and not np.array_equal(a[:n], b[:n]) else n
            examples.append(
                {"doc": d, "at": at, "got": a[at : at + 6].tolist(), "want": b[at : at + 6].tolist()}
            )
    return {"differ": differ, "examples": examples}


def worker(cfg: dict[str, Any]) -> dict[str, Any]:
    """Load; time a pass over the cold set; warm up on the warm-up set; time the warm set, then again."""
    import numpy as np

    engine, mode, cores = cfg["engine"], cfg["mode"], cfg["cores"]
    t0 = time.perf_counter()
    tok = load_engine(engine, cfg["model"], cfg["tokenizer_json"])
    load_s = time.perf_counter() - t0
    calls, refs = {}, {}
    for part in ("cold", "warmup", "warm"):
        with open(cfg[part]["docs"], encoding="utf-8") as f:
            calls[part] = make_call(engine, mode, cores, tok, json.load(f))
        if cfg[part]["ref"]:
            refs[part] = np.load(cfg[part]["ref"])

    def checked(part: str) -> tuple[list[float], dict[str, Any]]:
        out, wall, cpu = timed(calls[part])
        return [wall, cpu], compare(as_flat(engine, mode, out), refs[part]["ids"], refs[part]["lengths"])

    cold, check_cold = checked("cold")
    for _ in range(cfg["warmup_passes"]):
        timed(calls["warmup"])
    warm, check_warm = checked("warm")
    again = [list(timed(calls["warm"])[1:]) for _ in range(cfg["repeat"] - 1)]
    last, check_again = checked("warm")
    return {
        "load_s": load_s,
        "cold": cold,
        "warm": warm,
        "again": [*again, last],
        "check": {"cold": check_cold, "warm": check_warm, "again": check_again},
        "cpus": len(os.sched_getaffinity(0)),
        "loadavg": os.getloadavg()[0],
    }


def startup_worker(cfg: dict[str, Any]) -> dict[str, Any]:
    """Import, load and the first two encode calls of one engine, in a fresh process."""
    engine = cfg["engine"]
    if engine == "none":  # the harness alone: interpreter start and this script's imports
        return {"import_s": 0.0, "load_s": 0.0, "first_s": 0.0, "second_s": 0.0}
    t0 = time.perf_counter()
    __import__(ENGINES[engine][0])
    t1 = time.perf_counter()
    tok = load_engine(engine, cfg["model"], cfg["tokenizer_json"])
    t2 = time.perf_counter()
    call = make_call(engine, "encode", 1, tok, [STARTUP_TEXT])
    call()
    t3 = time.perf_counter()
    call()
    t4 = time.perf_counter()
    return {"import_s": t1 - t0, "load_s": t2 - t1, "first_s": t3 - t2, "second_s": t4 - t3}


# ---- parent ---------------------------------------------------------------------------------------


def engine_env(cores: int) -> dict[str, str]:
    """The environment of a worker: each engine's thread pool sized to the cores it is pinned to.

    numpy's OpenBLAS gets one thread: no engine uses BLAS, but ``import numpy`` (the worker's, for
    the reference ids) starts OpenBLAS's server threads, which busy-wait for a while (about 30 ms
    of CPU here) and so can take one of the two cores from the first pass of any engine (OpenBLAS
    reads ``OMP_NUM_THREADS`` when ``OPENBLAS_NUM_THREADS`` is not set).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAYON_", "FASTOKENS_"))}
    env.update(
        RAYON_NUM_THREADS=str(cores),
        FASTOKENS_BPE_THREADS=str(cores),
        TOKENIZERS_PARALLELISM="true" if cores > 1 else "false",
        OMP_NUM_THREADS=str(cores),
        OPENBLAS_NUM_THREADS="1",
    )
    return env


def run_pinned(
    kind: str,
    cfg: dict[str, Any],
    cpus: str,
    cores: int,
    timeout: float,
    env_changes: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    """Runs a worker in a fresh interpreter pinned with taskset; its result, or {"error": ...}.

    ``env_changes`` sets variables of the worker's environment (``None`` removes one).
    """
    env = engine_env(cores)
    for key, value in (env_changes or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cfg, f)
        cfg_path = f.name
    out_path = cfg_path + ".out"
    cmd = ["taskset", "-c", cpus, sys.executable, str(Path(__file__).resolve())]
    cmd += ["--_worker", kind, "--_config", cfg_path, "--_out", out_path]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not os.path.exists(out_path):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
        with open(out_path) as f:
            result = json.load(f)
        result["process_s"] = wall
        return result
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    finally:
        for p in (cfg_path, out_path):
            if os.path.exists(p):
                os.unlink(p)


def engine_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for engine, (module, _) in ENGINES.items():
        if importlib.util.find_spec(module) is None:
            versions[engine] = None
            continue
        try:
            versions[engine] = importlib.metadata.version(module)
        except importlib.metadata.PackageNotFoundError:  # bpetok from a source tree (PYTHONPATH)
            versions[engine] = getattr(__import__(module), "__version__", "?")
    return versions


def bpetok_origin() -> str:
    spec = importlib.util.find_spec("bpetok")
    return str(Path(spec.origin).parent) if spec and spec.origin else "(not found)"


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpora", default="/tmp/corpora", help="directory of NAME.jsonl corpora")
    ap.add_argument("--sets", default=",".join(SETS), help="comma-separated corpus names")
    ap.add_argument("--mb", type=float, default=3.0, help="sample per corpus, MB of whole documents")
    ap.add_argument("--repeat", type=int, default=3, help="passes over the warm set again, per process")
    ap.add_argument("--warmup", type=int, default=1, help="untimed passes over the warm-up documents")
    ap.add_argument(
        "--fresh", type=int, default=3, help="fresh processes per engine, mode, core count and corpus"
    )
    ap.add_argument("--engines", default=",".join(ENGINES), help="comma-separated: " + ", ".join(ENGINES))
    ap.add_argument("--cores", default="1,2", help="1, 2 or 1,2")
    ap.add_argument("--vocab", default=None, help=f"SentencePiece .model for every engine ({DEFAULT_MODEL})")
    ap.add_argument("--json", default=None, help="also write every figure to this JSON file")
    ap.add_argument("--startup", action="store_true", help="measure load and first-call times instead")
    ap.add_argument("--startup-runs", type=int, default=7, help="fresh processes per engine for --startup")
    ap.add_argument(
        "--huge", type=float, default=None, metavar="MB", help="time one document of MB MB on 1 and 2 threads"
    )
    ap.add_argument("--timeout", type=float, default=900, help="seconds before a worker is stopped")
    ap.add_argument("--_worker", help=argparse.SUPPRESS)
    ap.add_argument("--_config", help=argparse.SUPPRESS)
    ap.add_argument("--_out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._worker:
        with open(args._config) as f:
            cfg = json.load(f)
        result = {"throughput": worker, "startup": startup_worker, "huge": huge_worker}[args._worker](cfg)
        with open(args._out, "w") as f:
            json.dump(result, f)
        return 0
    if shutil.which("taskset") is None:
        sys.exit("taskset (util-linux) is needed to pin the engines to cores")
    return run(args)


def prepare(args: argparse.Namespace, work: Path) -> tuple[str, str, str, dict[str, str | None], list[str]]:
    """The model paths every worker loads, the engines' versions, and notes on those left out."""
    model = Path(args.vocab) if args.vocab else DEFAULT_MODEL
    if not model.is_file():
        sys.exit(f"{model} not found; pass --vocab PATH to a SentencePiece .model")
    versions = engine_versions()
    notes = []
    for engine in list(versions):
        if versions[engine] is None:
            notes.append(f"{ENGINES[engine][1]}: not installed (pip install {ENGINES[engine][0]}); left out")
    if versions["sentencepiece"] is None:
        sys.exit("sentencepiece is needed: it is the reference every engine's ids are checked against")
    bpetok_model = "embedded"
    if args.vocab:
        bpetok_model = str(model)
    elif versions["bpetok"] is not None:
        import bpetok

        if bpetok.Tokenizer.default().model_bytes != model.read_bytes():
            notes.append(f"NOTE: bpetok's embedded model is not the bytes of {model}")
    tokenizer_json = str(work / "tokenizer.json")
    if versions["hf"] is not None:
        import sentencepiece

        spm_to_hf_tokenizer(sentencepiece.SentencePieceProcessor(model_file=str(model))).save(tokenizer_json)
    else:
        for engine in ("fastokens", "hf"):
            if versions[engine] is not None:
                notes.append(f"{ENGINES[engine][1]}: left out (its tokenizer.json is made with tokenizers)")
                versions[engine] = None
    return str(model), bpetok_model, tokenizer_json, versions, notes


def draw_sets(corpora: Path, name: str, mb: float) -> dict[str, list[str]]:
    """The three disjoint seeded samples of corpus ``name`` (cold, warmup, warm), each of whole
    documents in corpus order, drawn until it holds ``mb`` MB of UTF-8 (the last may hold less)."""
    docs = load_corpus(corpora / f"{name}.jsonl")
    order = list(range(len(docs)))
    random.Random(f"{SEED}:{name}").shuffle(order)
    sets = {}
    for part in ("cold", "warmup", "warm"):
        chosen, total = [], 0
        while order and total < mb * MB:
            chosen.append(order.pop(0))
            total += utf8_len(docs[chosen[-1]])
        sets[part] = [docs[i] for i in sorted(chosen)]
    return sets


def write_samples(args: argparse.Namespace, name: str, work: Path, model: str) -> dict[str, dict[str, Any]]:
    """Three disjoint seeded samples of whole documents of corpus ``name``, each of ``--mb`` MB.

    cold: timed first in a fresh process; warmup: encoded next, not timed; warm: timed after it, then
    again. Each is written as a JSON list, with sentencepiece's ids (the reference) for cold and warm.
    """
    import numpy as np
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=model)
    out: dict[str, dict[str, Any]] = {}
    for part, texts in draw_sets(Path(args.corpora), name, args.mb).items():
        total = sum(map(utf8_len, texts))
        entry = {"docs": str(work / f"{name}.{part}.json"), "ref": None, "n": len(texts), "bytes": total}
        with open(entry["docs"], "w", encoding="utf-8") as f:
            json.dump(texts, f, ensure_ascii=False)
        if part != "warmup":
            ref = sp.encode(texts, num_threads=len(os.sched_getaffinity(0)))
            entry["ref"] = str(work / f"{name}.{part}.ref.npz")
            np.savez(
                entry["ref"],
                ids=np.concatenate([np.asarray(x, dtype=np.uint32) for x in ref] or [np.zeros(0, np.uint32)]),
                lengths=np.asarray([len(x) for x in ref], dtype=np.int64),
            )
        out[part] = entry
    if not out["warm"]["n"]:
        sys.exit(f"{name}: too small for three samples of {args.mb} MB; use a smaller --mb")
    return out


def run(args: argparse.Namespace) -> int:
    if min(args.repeat, args.fresh) < 1 or args.warmup < 0:
        sys.exit("--repeat and --fresh must be >= 1, --warmup >= 0")
    t_start = time.perf_counter()
    load0 = os.getloadavg()
    allowed = sorted(os.sched_getaffinity(0))
    work_dir = tempfile.TemporaryDirectory(prefix="bench_peers_")
    work = Path(work_dir.name)
    model, bpetok_model, tokenizer_json, versions, notes = prepare(args, work)
    engines = [e for e in args.engines.split(",") if e]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        sys.exit(f"unknown engines {unknown}; choose from {', '.join(ENGINES)}")
    engines = [e for e in engines if versions[e] is not None]
    base = {"model": model, "tokenizer_json": tokenizer_json}
    header = [
        f"bpetok vs peers; Python {platform.python_version()}, CPUs {allowed}, "
        f"load average at start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}",
        "  " + ", ".join(f"{ENGINES[e][1]} {versions[e]}" for e in ENGINES if versions[e] is not None),
        f"  model: {model} (bpetok: {bpetok_model})",
        f"  bpetok imported from {bpetok_origin()}",
        *(
            [
                f"  WARNING: load average {load0[0]:.2f} at the start on {len(allowed)} CPUs: other "
                "processes compete for the cores, so the figures are noisy and 2-core figures understate "
                "scaling"
            ]
            if load0[0] > 0.5 * len(allowed)
            else []
        ),
        *(f"  {n}" for n in notes),
    ]
    if args.startup:
        return run_startup(args, engines, base, bpetok_model, header, load0, t_start)
    if args.huge is not None:
        return run_huge(args, work, bpetok_model, header, load0, t_start)

    cores_list = [int(c) for c in args.cores.split(",") if c]
    if 2 in cores_list and (0 not in allowed or 1 not in allowed):
        notes.append(f"2 cores: CPUs 0 and 1 are not both usable here ({allowed}); 2-core rows left out")
        cores_list = [c for c in cores_list if c != 2]
    cpus_of = {1: "0", 2: "0,1"}
    sets = [s for s in args.sets.split(",") if s]
    missing = [s for s in sets if not (Path(args.corpora) / f"{s}.jsonl").is_file()]
    if missing:
        sys.exit(
            f"corpora {missing} not found in {args.corpora}. Build them with (from the repository root):\n"
            f"  python3 ../shared/corpora/build.py {args.corpora} --install      # en, code, ja\n"
            f"  python3 benchmarks/build_corpora.py {args.corpora} --install     # zh, multi"
        )
    samples = {}
    for name in sets:
        samples[name] = write_samples(args, name, work, model)
        parts = samples[name]
        header.append(
            f"  {name}: "
            + ", ".join(f"{p} {parts[p]['n']} documents {parts[p]['bytes'] / MB:.2f} MB" for p in parts)
        )
        log(header[-1].strip() + "; reference ids made")

    # One mode's 1-core and 2-core processes run one after the other, so that the scaling of each
    # round compares two processes in the same phase of a shared machine (see summarize).
    jobs = [
        (name, cores, engine, mode)
        for name in sets
        for engine in engines
        for (e, mode), by_cores in MODES.items()
        for cores in cores_list
        if e == engine and cores in by_cores
    ]
    results: dict[tuple[str, int, str, str], list[dict[str, Any]]] = {job: [] for job in jobs}
    for round_ in range(args.fresh):
        for k, (name, cores, engine, mode) in enumerate(jobs):
            cfg = {
                **base,
                "model": bpetok_model if engine == "bpetok" else model,
                "engine": engine,
                "mode": mode,
                "cores": cores,
                **samples[name],
                "repeat": args.repeat,
                "warmup_passes": args.warmup,
            }
            r = run_pinned("throughput", cfg, cpus_of[cores], cores, args.timeout)
            results[(name, cores, engine, mode)].append(r)
            status = r.get("error") or (
                f"fresh {samples[name]['cold']['bytes'] / MB / r['cold'][0]:.1f} MB/s, "
                f"warm {samples[name]['warm']['bytes'] / MB / r['warm'][0]:.1f} MB/s"
            )
            log(f"[{round_ + 1}/{args.fresh} {k + 1}/{len(jobs)}] {name} {cores}c {engine} {mode}: {status}")
    load1 = os.getloadavg()
    elapsed = time.perf_counter() - t_start
    report, data = summarize(sets, cores_list, engines, samples, results, args)
    print("\n".join(header))
    print(report)
    print(
        f"\nload average at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}; "
        f"the run took {elapsed:.0f} s ({len(jobs) * args.fresh} processes)"
    )
    bp_bad = [f"{n}" for n in sets if not data["exact"].get("bpetok", {}).get(n, {"ok": True})["ok"]]
    if args.json:
        data["config"] = {
            "corpora": args.corpora,
            "sets": sets,
            "mb": args.mb,
            "repeat": args.repeat,
            "warmup": args.warmup,
            "fresh": args.fresh,
            "cores": cores_list,
            "model": model,
            "bpetok_model": bpetok_model,
            "versions": versions,
            "python": platform.python_version(),
            "cpus": allowed,
            "loadavg_start": load0,
            "loadavg_end": load1,
            "elapsed_s": elapsed,
            "notes": notes,
            "modes": {f"{e}.{m}": by_cores for (e, m), by_cores in MODES.items()},
        }
        data["raw"] = [
            {"corpus": n, "cores": c, "engine": e, "mode": m, "runs": runs}
            for (n, c, e, m), runs in results.items()
        ]
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1, ensure_ascii=False)
        print(f"figures written to {args.json}")
    work_dir.cleanup()
    if bp_bad:
        print(f"bpetok's ids differ from sentencepiece's on {', '.join(bp_bad)}")
        return 1
    return 0


# ---- report ---------------------------------------------------------------------------------------


FIGURES = {  # key -> (which sample, what the table says)
    "fresh": ("cold", "FRESH PROCESS: the first pass in a new process (cold caches), over the cold set"),
    "warm": (
        "warm",
        "WARM: the first pass over the warm set, after the warm-up set (other documents of the corpus): "
        "caches warm, text not seen before",
    ),
    "again": ("warm", "AGAIN: the warm set encoded again, median of --repeat passes: caches hold its text"),
}


def summarize(
    sets: list[str],
    cores_list: list[int],
    engines: list[str],
    samples: dict[str, dict[str, dict[str, Any]]],
    results: dict[tuple[str, int, str, str], list[dict[str, Any]]],
    args: argparse.Namespace,
) -> tuple[str, dict[str, Any]]:
    """The tables and the JSON figures: MB/s per (corpus, cores, engine, mode), fresh, warm and again."""
    figures: dict[str, dict[str, Any]] = {}  # "name|cores|engine|mode" -> figures
    exact: dict[str, dict[str, dict[str, Any]]] = {}  # engine -> corpus -> {"ok", "differ", ...}
    for (name, cores, engine, mode), runs in results.items():
        ok_runs = [r for r in runs if "error" not in r]
        entry: dict[str, Any] = {"errors": [r["error"] for r in runs if "error" in r]}
        figures[f"{name}|{cores}|{engine}|{mode}"] = entry
        if not ok_runs:
            continue
        timings = {
            "fresh": [r["cold"] for r in ok_runs],
            "warm": [r["warm"] for r in ok_runs],
            "again": [x for r in ok_runs for x in r["again"]],
        }
        for key, samples_ in timings.items():
            nbytes = samples[name][FIGURES[key][0]]["bytes"]
            entry[f"{key}_mb_s"] = nbytes / MB / median([w for w, _ in samples_])
            entry[f"{key}_cpu_per_wall"] = median([c / w for w, c in samples_])
            entry[f"{key}_mb_per_cpu_s"] = nbytes / MB / median([c for _, c in samples_])
        entry["load_s"] = median([r["load_s"] for r in ok_runs])
        checks = [(part, c) for r in ok_runs for part, c in r["check"].items()]
        entry["differ"] = max(c["differ"] for _, c in checks)
        e = exact.setdefault(engine, {}).setdefault(name, {"ok": True, "differ": 0, "examples": []})
        for part, c in checks:
            if c["differ"]:
                e["ok"] = False
                e["differ"] = max(e["differ"], c["differ"])
                if len(e["examples"]) < 2:
                    where = f"{mode} {cores}c, {part} pass"
                    e["examples"] += [{"mode": where, **x} for x in c["examples"][:1]]

    def best(name: str, cores: int, engine: str, key: str) -> tuple[float, str] | None:
        """The engine's fastest mode on ``key``: (figure, mode)."""
        cands = []
        for (e, mode), by_cores in MODES.items():
            f_ = figures.get(f"{name}|{cores}|{engine}|{mode}")
            if e == engine and cores in by_cores and f_ and key in f_:
                cands.append((f_[key], mode))
        return max(cands) if cands else None

    def compared(name: str, cores: int, key: str) -> tuple[list[str], dict[str, Any]]:
        """Table cells and JSON for bpetok vs the fastest exact peer: figure (mode), peer, ratio."""
        mine = best(name, cores, "bpetok", key) if "bpetok" in engines else None
        peers = []
        for e in engines:
            b = best(name, cores, e, key)
            if e != "bpetok" and b is not None and exact.get(e, {}).get(name, {"ok": False})["ok"]:
                peers.append((b[0], b[1], e))
        top = max(peers) if peers else None
        cells = [
            f"{mine[0]:.1f} ({mine[1]})" if mine else "n/a",
            f"{top[0]:.1f} {ENGINES[top[2]][1]} ({top[1]})" if top else "n/a",
            f"{mine[0] / top[0]:.2f}x" if mine and top else "n/a",
        ]
        data = {
            "bpetok": mine and {"value": round(mine[0], 2), "mode": mine[1]},
            "peer": top and {"engine": top[2], "value": round(top[0], 2), "mode": top[1]},
            "ratio": round(mine[0] / top[0], 3) if mine and top else None,
        }
        return cells, data

    def paired_scaling(name: str, mode: str, key: str) -> tuple[float, float, float] | None:
        """bpetok's 1-core time over its 2-core time in ``mode`` on figure ``key`` (fresh, warm or
        again), round by round (the two processes ran one after the other): the median, the least
        and the most over the rounds where both ran."""

        def wall(run: dict[str, Any]) -> float:
            if key == "again":
                return median([w for w, _ in run["again"]])
            return run["cold" if key == "fresh" else "warm"][0]

        ones, twos = (results.get((name, c, "bpetok", mode), []) for c in (1, 2))
        pairs = zip(ones, twos, strict=True)
        ratios = [wall(one) / wall(two) for one, two in pairs if "error" not in one and "error" not in two]
        return (median(ratios), min(ratios), max(ratios)) if ratios else None

    lines: list[str] = [
        "",
        f"MB/s of input, median over {args.fresh} fresh processes per figure; bpetok 2c/1c = the ratio of"
        " bpetok's figures; paired = the median over the rounds of bpetok's 1-core time over its 2-core"
        " time in the 2-core figure's mode, the two processes run one after the other (in brackets the"
        " least and the most of the rounds); (mode) = the faster"
        " of the engine's APIs (see MODES); fastest exact peer = the fastest engine other than bpetok whose"
        " ids equal sentencepiece's on every document of that corpus",
    ]
    summary: dict[str, Any] = {}
    for key, (_, title) in FIGURES.items():
        lines += ["", title]
        head = ["corpus"]
        for c in cores_list:
            head += [f"bpetok {c}c", f"fastest exact peer {c}c", "ratio"]
        if cores_list == [1, 2]:
            head += ["bpetok 2c/1c", "paired"]
        lines += [md_row(head), md_row(["---"] * len(head))]
        for name in sets:
            row = [name]
            s: dict[str, Any] = {}
            for c in cores_list:
                cells, s[f"{c}c"] = compared(name, c, f"{key}_mb_s")
                row += cells
            if cores_list == [1, 2]:
                one, two = s["1c"]["bpetok"], s["2c"]["bpetok"]
                scaling = two["value"] / one["value"] if one and two else None
                paired = two and paired_scaling(name, two["mode"], key)
                row.append(f"{scaling:.2f}x" if scaling else "n/a")
                row.append(f"{paired[0]:.2f}x ({paired[1]:.2f}-{paired[2]:.2f})" if paired else "n/a")
                s["bpetok_scaling_2c_1c"] = scaling and round(scaling, 3)
                s["bpetok_scaling_2c_1c_paired"] = paired and round(paired[0], 3)
                s["bpetok_scaling_2c_1c_paired_range"] = paired and [round(paired[1], 3), round(paired[2], 3)]
            summary.setdefault(key, {})[name] = s
            lines.append(md_row(row))

    if 1 in cores_list:
        lines += [
            "",
            "1 CORE BY CPU TIME: MB per CPU-second of the process instead of per wall-second, a "
            "cross-check when other processes took the core part of the time (for 2 cores use wall time)",
        ]
        head = ["corpus"]
        for key in FIGURES:
            head += [f"bpetok {key}", f"fastest exact peer {key}", "ratio"]
        lines += [md_row(head), md_row(["---"] * len(head))]
        for name in sets:
            row = [name]
            for key in FIGURES:
                cells, summary.setdefault(f"{key}_by_cpu_1c", {})[name] = compared(
                    name, 1, f"{key}_mb_per_cpu_s"
                )
                row += cells
            lines.append(md_row(row))

    lines += [
        "",
        "EVERY ENGINE: MB/s fresh / warm / again, [process CPU time / wall time of the warm pass]; "
        "x = ids differ from sentencepiece's on that corpus (see EXACTNESS)",
    ]
    head = ["engine", "cores", "mode", *sets]
    lines += [md_row(head), md_row(["---"] * len(head))]
    for engine in engines:
        for (e, mode), by_cores in MODES.items():
            for c in cores_list:
                if e != engine or c not in by_cores:
                    continue
                cells = []
                for name in sets:
                    f_ = figures.get(f"{name}|{c}|{engine}|{mode}")
                    if f_ is None:
                        cells.append("")
                    elif "fresh_mb_s" not in f_:
                        cells.append("error")
                    else:
                        mark = " x" if f_["differ"] else ""
                        cells.append(
                            f"{f_['fresh_mb_s']:.1f} / {f_['warm_mb_s']:.1f} / {f_['again_mb_s']:.1f} "
                            f"[{f_['warm_cpu_per_wall']:.2f}]{mark}"
                        )
                lines.append(md_row([ENGINES[engine][1], str(c), mode, *cells]))
    lines += ["", "MODES (the timed call; docs = the set's documents, tok = the engine's tokenizer):"]
    for (e, mode), by_cores in MODES.items():
        if e in engines:
            for c, what in by_cores.items():
                if c in cores_list:
                    lines.append(f"  {ENGINES[e][1]} {mode} {c}c: {what}")
    lines += [f"  {n}" for n in NOTES]

    lines += [
        "",
        "EXACTNESS: ids == sentencepiece's on every document of the cold and warm sets, every mode and "
        "core count (checked on the fresh pass, the warm pass and the last pass again)",
    ]
    head = ["engine", *sets]
    lines += [md_row(head), md_row(["---"] * len(head))]
    for engine in engines:
        cells = []
        for name in sets:
            e = exact.get(engine, {}).get(name)
            if e is None:
                cells.append("not run")
            elif e["ok"]:
                cells.append("exact")
            else:
                docs = samples[name]["cold"]["n"] + samples[name]["warm"]["n"]
                cells.append(f"NOT EXACT: up to {e['differ']} of {docs} docs differ")
        lines.append(md_row([ENGINES[engine][1], *cells]))
    for engine in engines:
        for name in sets:
            for x in exact.get(engine, {}).get(name, {}).get("examples", []):
                lines.append(
                    f"  {ENGINES[engine][1]} on {name} ({x['mode']}): doc {x['doc']}, first difference at "
                    f"token {x['at']}: got {x['got']}, sentencepiece {x['want']}"
                )
    for k, f_ in figures.items():
        if f_["errors"]:
            lines.append(f"  ERROR {k.replace('|', ' ')}: {f_['errors'][0]}")
    loads = {
        e: [f_["load_s"] for k, f_ in figures.items() if k.split("|")[2] == e and "load_s" in f_]
        for e in engines
    }
    lines.append(
        "  tokenizer load in the workers (median, s): "
        + ", ".join(f"{ENGINES[e][1]} {median(v):.3f}" for e, v in loads.items() if v)
    )
    worker_load = [r["loadavg"] for runs in results.values() for r in runs if "loadavg" in r]
    if worker_load:
        lines.append(
            f"  1-minute load average at the end of each worker: median {median(worker_load):.2f}, "
            f"max {max(worker_load):.2f} (2 CPUs: above ~1-2 other processes competed for them)"
        )
    data = {"summary": summary, "figures": figures, "exact": exact}
    return "\n".join(lines), data


def md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


# ---- startup --------------------------------------------------------------------------------------


def run_startup(
    args: argparse.Namespace,
    engines: list[str],
    base: dict[str, str],
    bpetok_model: str,
    header: list[str],
    load0: tuple[float, float, float],
    t_start: float,
) -> int:
    rows = [("none", "")]
    for engine in engines:
        rows.append((engine, bpetok_model if engine == "bpetok" else base["model"]))
        if engine == "bpetok" and bpetok_model == "embedded":
            rows.append((engine, base["model"]))
    runs: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(rows))}
    # Imports as an installed package's are: from cached bytecode. An editable install with
    # PYTHONDONTWRITEBYTECODE set (some shells set it) never writes it, and compiles every module on
    # every import (8.9 ms against 3.1 for bpetok here); so the workers may write it, and one
    # untimed process per row writes it first.
    env = {"PYTHONDONTWRITEBYTECODE": None}
    for engine, model in rows:
        run_pinned("startup", {**base, "engine": engine, "model": model}, "0", 1, args.timeout, env)
    for _ in range(args.startup_runs):  # interleaved, so that a busy moment hits every engine alike
        for i, (engine, model) in enumerate(rows):
            cfg = {**base, "engine": engine, "model": model}
            runs[i].append(run_pinned("startup", cfg, "0", 1, args.timeout, env))
    what = {
        "none": "nothing: the harness alone (Python start, this script's imports)",
        "bpetok": "Tokenizer.default()",
        "gigatoken": "Tokenizer.from_sentencepiece(.model)",
        "fastokens": "Tokenizer.from_file(tokenizer.json) [j]",
        "kitoken": "Kitoken.from_sentencepiece_file(.model)",
        "hf": "Tokenizer.from_file(tokenizer.json) [j]",
        "sentencepiece": "SentencePieceProcessor(model_file=.model)",
    }
    lines = [
        "",
        f"STARTUP: ms, median of {args.startup_runs} fresh processes pinned to CPU 0 (taskset -c 0)",
        "  process = the whole subprocess as the parent sees it (interpreter start, import, load, 2 calls)",
        f"  first / second encode = {len(STARTUP_TEXT.encode())} bytes of mixed text, the same call twice",
        "  import+load+first = the three summed, in each process",
        "  imports read cached bytecode (an untimed run per row writes it; PYTHONDONTWRITEBYTECODE unset)",
    ]
    head = [
        "engine",
        "loaded with",
        "import",
        "load",
        "first encode",
        "second encode",
        "import+load+first",
        "process",
    ]
    lines += [md_row(head), md_row(["---"] * len(head))]
    out = []
    for i, (engine, model) in enumerate(rows):
        ok = [r for r in runs[i] if "error" not in r]
        label = ENGINES[engine][1] if engine in ENGINES else "(baseline)"
        how = "Tokenizer.from_file(.model)" if engine == "bpetok" and model != "embedded" else what[engine]
        if not ok:
            lines.append(md_row([label, how, runs[i][0]["error"], "", "", "", "", ""]))
            continue
        m = {k: median([r[k] for r in ok]) * 1e3 for k in ("import_s", "load_s", "first_s", "second_s")}
        m["total"] = median([(r["import_s"] + r["load_s"] + r["first_s"]) for r in ok]) * 1e3
        m["process"] = median([r["process_s"] for r in ok]) * 1e3
        out.append({"engine": engine, "how": how, "ms": {k: round(v, 3) for k, v in m.items()}, "runs": ok})
        lines.append(
            md_row(
                [label, how]
                + [f"{m[k]:.1f}" for k in ("import_s", "load_s")]
                + [f"{m[k]:.3f}" for k in ("first_s", "second_s")]
                + [f"{m['total']:.1f}", f"{m['process']:.0f}"]
            )
        )
    lines.append(
        "  [j] fastokens and HF cannot read a SentencePiece .model: they load the tokenizer.json this script "
        "builds from it (bench_encode.spm_to_hf_tokenizer, not timed here)"
    )
    print_report(args, header + lines, t_start, {"startup": out, "startup_runs": args.startup_runs}, load0)
    return 0


def print_report(
    args: argparse.Namespace,
    lines: list[str],
    t_start: float,
    figures: dict[str, Any],
    load0: tuple[float, float, float],
) -> None:
    """Prints the report, then the load average and the run's length; writes ``--json``."""
    load1 = os.getloadavg()
    print("\n".join(lines))
    print(
        f"\nload average at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}; "
        f"the run took {time.perf_counter() - t_start:.0f} s"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**figures, "loadavg": [load0, load1]}, f, indent=1)
        print(f"figures written to {args.json}")


# ---- one huge document ----------------------------------------------------------------------------

HUGE_SETS = ("en", "code", "ja")


def huge_worker(cfg: dict[str, Any]) -> dict[str, Any]:
    """One huge text into numpy on ``threads`` threads: the first call (which includes CPython's UTF-8
    copy of the ``str``, made once per string) and ``repeat`` more; the ids' digest of each call."""
    import hashlib

    import bpetok

    with open(cfg["text"], encoding="utf-8") as f:
        text = f.read()
    model = cfg["model"]
    tok = bpetok.Tokenizer.default() if model == "embedded" else bpetok.Tokenizer.from_file(model)
    walls, digests = [], set()
    for _ in range(1 + cfg["repeat"]):
        t0 = time.perf_counter()
        ids, _ = tok.encode_batch_to_numpy([text], num_threads=cfg["threads"])
        walls.append(time.perf_counter() - t0)
        digests.add(hashlib.sha256(ids.tobytes()).hexdigest())
        n_ids = len(ids)
        del ids
    return {"walls": walls, "digests": sorted(digests), "ids": n_ids}


def write_huge_text(args: argparse.Namespace, work: Path) -> tuple[Path, int]:
    """The en, code and ja documents joined by newlines, repeated and cut to ``--huge`` MB."""
    docs = []
    for name in HUGE_SETS:
        path = Path(args.corpora) / f"{name}.jsonl"
        if not path.is_file():
            sys.exit(
                f"{path} not found; build it with: "
                f"python3 ../shared/corpora/build.py {args.corpora} --install"
            )
        docs += load_corpus(path)
    data = "\n".join(docs).encode("utf-8")
    want = int(args.huge * MB)
    data = (data * (want // len(data) + 1))[:want].decode("utf-8", errors="ignore")
    path = work / "huge.txt"
    path.write_text(data, encoding="utf-8")
    return path, utf8_len(data)


def run_huge(
    args: argparse.Namespace,
    work: Path,
    bpetok_model: str,
    header: list[str],
    load0: tuple[float, float, float],
    t_start: float,
) -> int:
    allowed = sorted(os.sched_getaffinity(0))
    if 0 not in allowed or 1 not in allowed:
        sys.exit(f"--huge needs CPUs 0 and 1 (usable here: {allowed})")
    path, nbytes = write_huge_text(args, work)
    cfg = {"text": str(path), "model": bpetok_model, "repeat": args.repeat}
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for _ in range(args.fresh):  # interleaved, so that a busy moment hits both alike
        for threads in runs:
            runs[threads].append(run_pinned("huge", {**cfg, "threads": threads}, "0,1", 2, args.timeout))
    errors = [r["error"] for rs in runs.values() for r in rs if "error" in r]
    if errors:
        sys.exit(f"a worker failed: {errors[0]}")
    digests = {d for rs in runs.values() for r in rs for d in r["digests"]}
    mbs = nbytes / MB
    fig = {
        threads: {
            "first": median([mbs / r["walls"][0] for r in rs]),
            "again": median([mbs / w for r in rs for w in r["walls"][1:]]),
        }
        for threads, rs in runs.items()
    }
    lines = [
        "",
        f"ONE HUGE DOCUMENT: {mbs:,.0f} MB ({', '.join(HUGE_SETS)} joined and repeated), "
        f"{runs[1][0]['ids']:,} ids; bpetok encode_batch_to_numpy([text], num_threads=N)",
        f"  MB/s, medians: {args.fresh} fresh processes pinned to CPUs 0,1 (taskset -c 0,1) per N; "
        f"'first' = each process's first call (with CPython's UTF-8 copy of the str), "
        f"'again' = its {args.repeat} calls after it",
        md_row(["threads", "first call", "again", "again / 1 thread"]),
        md_row(["---"] * 4),
    ]
    for threads, f in fig.items():
        lines.append(
            md_row(
                [
                    str(threads),
                    f"{f['first']:.1f}",
                    f"{f['again']:.1f}",
                    f"{f['again'] / fig[1]['again']:.2f}x",
                ]
            )
        )
    same = len(digests) == 1
    lines.append(
        f"  ids: {'the same in every call' if same else 'DIFFER between calls'} ({len(digests)} digest(s))"
    )
    print_report(args, header + lines, t_start, {"huge": {"mb": mbs, "figures": fig, "runs": runs}}, load0)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
