"""The shard reader (``bpetok.ShardDataset``) and ``bpetok.collate_flattened``, numpy only.

Fixtures are shard directories written here, with numpy, exactly as ``docs/shard-format.md``
describes, from documents packed by a small reference chunker following ``docs/packing.md``
(chunks with overlap, placed greedily; the reader does not care how samples were placed).

``sliding_window_attention`` and ``assert_attention_matches_whole_documents`` are the numpy
reference check of the packing semantics: sliding-window causal attention over a packed row
(using only ``cu_seqlens`` and W) gives the same output at every predictor as attention over each
whole document alone. They take only what ``ShardDataset`` returns, so they can check the real
packer's output as well (``from test_dataset import assert_attention_matches_whole_documents``).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import pickle
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpetok
import numpy as np
import pytest
from bpetok.dataset import ShardFormatError
from hypothesis import given, settings
from hypothesis import strategies as st

FIELDS = ("input_ids", "labels", "position_ids", "cu_seqlens", "doc_ids", "doc_starts")
DTYPES = {
    "input_ids": np.int64,
    "labels": np.int64,
    "position_ids": np.int64,
    "cu_seqlens": np.int32,
    "doc_ids": np.int64,
    "doc_starts": np.int64,
}

Segment = tuple[int, int, int, int, int]  # start, length, context, doc_id, doc_start


# ---- reference packer and shard writer ----------------------------------------------------------


def overlap_tokens(seq_len: int, window: int, overlap: int | None) -> int:
    """docs/packing.md: max(1, requested); requested is overlap, or W if 0 < W < L, else 0."""
    requested = overlap if overlap is not None else (window if 0 < window < seq_len else 0)
    return max(1, requested)


def chunk_document(n: int, seq_len: int, overlap: int) -> list[tuple[int, int, int]]:
    """(doc_start, length, context) of each chunk of a document of n tokens (docs/packing.md)."""
    if n == 0:
        return []
    if n <= seq_len:
        return [(0, n, 0)]
    chunks = [(0, seq_len, 0)]
    target = seq_len  # the first target of the next chunk
    while target < n:
        start = target - overlap
        length = min(seq_len, n - start)
        chunks.append((start, length, overlap))
        target = start + length
    return chunks


@dataclass
class Packed:
    seq_len: int
    window: int
    overlap: int | None
    pad_id: int
    vocab_size: int
    docs: list[np.ndarray]
    samples: list[tuple[np.ndarray, list[Segment]]] = field(default_factory=list)

    @property
    def overlap_tokens(self) -> int:
        return overlap_tokens(self.seq_len, self.window, self.overlap)


def pack(
    docs: Sequence[np.ndarray],
    seq_len: int,
    window: int,
    *,
    overlap: int | None = None,
    pad_id: int = 0,
    vocab_size: int = 32000,
    shuffle_seed: int | None = None,
) -> Packed:
    """Chunks every document and places chunks greedily (next fit) into samples, padding the tail."""
    packed = Packed(seq_len, window, overlap, pad_id, vocab_size, [np.asarray(d) for d in docs])
    o = packed.overlap_tokens
    current: list[tuple[int, int, int, int]] = []  # doc_id, doc_start, length, context
    used = 0

    def close() -> None:
        nonlocal current, used
        tokens = np.full(seq_len, pad_id, dtype=np.int64)
        segments: list[Segment] = []
        pos = 0
        for doc_id, doc_start, length, context in current:
            tokens[pos : pos + length] = packed.docs[doc_id][doc_start : doc_start + length]
            segments.append((pos, length, context, doc_id, doc_start))
            pos += length
        if pos < seq_len:
            segments.append((pos, seq_len - pos, 0, -1, 0))
        packed.samples.append((tokens, segments))
        current, used = [], 0

    for doc_id, doc in enumerate(packed.docs):
        for doc_start, length, context in chunk_document(len(doc), seq_len, o):
            if used + length > seq_len:
                close()
            current.append((doc_id, doc_start, length, context))
            used += length
    if current:
        close()
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(packed.samples)
    return packed


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_shards(directory: Path, packed: Packed, samples_per_shard: int = 3) -> dict[str, Any]:
    """Writes ``packed`` as docs/shard-format.md says: three .npy files per shard and manifest.json."""
    directory.mkdir(parents=True, exist_ok=True)
    L = packed.seq_len
    dtype_name = "uint16" if packed.vocab_size <= 1 << 16 else "uint32"
    token_dtype = np.dtype("<u2") if dtype_name == "uint16" else np.dtype("<u4")
    shards = []
    for k, first in enumerate(range(0, len(packed.samples), samples_per_shard)):
        chunk = packed.samples[first : first + samples_per_shard]
        name = f"shard-{k:05d}"
        tokens = np.stack([t for t, _ in chunk]).astype(token_dtype)
        rows = [seg for _, segs in chunk for seg in segs]
        segments = np.array(rows, dtype="<i8").reshape(len(rows), 5)
        sample_index = np.zeros(len(chunk) + 1, dtype="<i8")
        sample_index[1:] = np.cumsum([len(segs) for _, segs in chunk])
        files = {}
        for kind, array in (("tokens", tokens), ("segments", segments), ("sample_index", sample_index)):
            path = directory / f"{name}.{kind}.npy"
            np.save(path, array)
            files[kind] = {"path": path.name, "size": path.stat().st_size, "sha256": _sha256(path)}
        padding = sum(seg[1] for seg in rows if seg[3] < 0)
        shards.append(
            {
                "name": name,
                "samples": len(chunk),
                "segments": len(rows),
                "tokens": len(chunk) * L,
                "padding_tokens": padding,
                "context_tokens": sum(seg[2] for seg in rows),
                "files": files,
            }
        )
    lengths = [len(d) for d in packed.docs]
    o = packed.overlap_tokens
    manifest = {
        "format": "bpetok-shards",
        "format_version": 1,
        "tokenizer": {"sha256": "0" * 64, "vocab_size": packed.vocab_size, "bos_id": 1, "eos_id": 2},
        "options": {
            "seq_len": L,
            "window": packed.window,
            "overlap": packed.overlap,
            "overlap_tokens": o,
            "pack_buffer": 4096,
            "seed": 0,
            "bos": False,
            "eos": False,
            "pad_id": packed.pad_id,
            "samples_per_shard": samples_per_shard,
        },
        "token_dtype": dtype_name,
        "inputs": [
            {
                "path": "synthetic.jsonl",
                "size": 0,
                "sha256": hashlib.sha256(b"").hexdigest(),
                "documents": len(lengths),
            }
        ],
        "shards": shards,
        "totals": {
            "documents": len(lengths),
            "empty_documents": lengths.count(0),
            "documents_split": sum(n > L for n in lengths),
            "document_tokens": sum(lengths),
            "samples": len(packed.samples),
            "padding_tokens": sum(s["padding_tokens"] for s in shards),
            "context_tokens": sum(s["context_tokens"] for s in shards),
            "target_tokens": sum(n - 1 for n in lengths if n > 0),
        },
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def random_docs(lengths: Sequence[int], seed: int, vocab_size: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab_size, n, dtype=np.int64) for n in lengths]


# ---- slow references --------------------------------------------------------------------------


def reference_sample(tokens: np.ndarray, segments: list[Segment], seq_len: int) -> dict[str, list[int]]:
    """The arrays of one sample, derived position by position as docs/shard-format.md states."""
    labels = [-100] * seq_len
    position_ids = [0] * seq_len
    cu_seqlens = [0]
    for start, length, context, doc_id, _ in segments:
        for j in range(length):
            position_ids[start + j] = j
            if doc_id >= 0 and j >= max(1, context):
                labels[start + j] = int(tokens[start + j])
        cu_seqlens.append(cu_seqlens[-1] + length)
    return {
        "input_ids": [int(t) for t in tokens],
        "labels": labels,
        "position_ids": position_ids,
        "cu_seqlens": cu_seqlens,
        "doc_ids": [s[3] for s in segments],
        "doc_starts": [s[4] for s in segments],
    }


def sliding_window_attention(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, cu_seqlens: np.ndarray, window: int
) -> np.ndarray:
    """Single-head causal attention over a packed row of T tokens ((T, d) arrays).

    Token i attends to j iff both are in the same segment of ``cu_seqlens``, j <= i, and
    i - j < window (``window`` 0: no limit). This is FlashAttention varlen with
    ``causal=True, window_size=(window - 1, 0)``.
    """
    T, d = q.shape
    cu = np.asarray(cu_seqlens, dtype=np.int64)
    assert cu[0] == 0 and cu[-1] == T
    segment = np.searchsorted(cu[1:], np.arange(T), side="right")
    i = np.arange(T)[:, None]
    j = np.arange(T)[None, :]
    allowed = (segment[:, None] == segment[None, :]) & (j <= i)
    if window > 0:
        allowed &= i - j < window
    scores = np.where(allowed, (q @ k.T) / np.sqrt(d), -np.inf)
    scores -= scores.max(axis=1, keepdims=True)
    weights = np.exp(scores)
    weights /= weights.sum(axis=1, keepdims=True)
    out: np.ndarray = weights @ v
    return out


def qkv(token_ids: np.ndarray, doc_positions: np.ndarray, d: int = 8) -> tuple[np.ndarray, ...]:
    """Deterministic q, k, v vectors from (token id, position in its document): equal pairs, equal vectors."""
    rng = np.random.default_rng(20240517)
    ids = np.asarray(token_ids, dtype=np.float64)[:, None]
    pos = np.asarray(doc_positions, dtype=np.float64)[:, None]
    out = []
    for _ in range(3):
        a, b, c = rng.standard_normal((3, d))
        out.append(np.sin(ids * a * 1e-3 + pos * b + c))
    return tuple(out)


def assert_attention_matches_whole_documents(
    sample: dict[str, np.ndarray], docs: Sequence[np.ndarray], window: int
) -> int:
    """Checks one sample (as ShardDataset returns it) against whole-document attention.

    For every target at sample position p (``labels[p] != -100``), the output at its predictor
    p - 1 over the packed row must equal the output at the predictor's document position over the
    whole document alone. Returns the number of targets checked.
    """
    cu = sample["cu_seqlens"]
    lengths = np.diff(cu)
    seg_doc = np.repeat(sample["doc_ids"], lengths)
    doc_pos = np.repeat(sample["doc_starts"], lengths) + sample["position_ids"]
    q, k, v = qkv(sample["input_ids"], doc_pos)
    packed_out = sliding_window_attention(q, k, v, cu, window)
    checked = 0
    for p in np.flatnonzero(sample["labels"] != -100):
        doc = docs[int(seg_doc[p])]
        n = len(doc)
        assert seg_doc[p - 1] == seg_doc[p] and doc_pos[p - 1] == doc_pos[p] - 1
        dq, dk, dv = qkv(doc, np.arange(n))
        whole = sliding_window_attention(dq, dk, dv, np.array([0, n]), window)
        np.testing.assert_allclose(packed_out[p - 1], whole[doc_pos[p] - 1], rtol=1e-12, atol=1e-12)
        checked += 1
    return checked


def sample_digest(ds: bpetok.ShardDataset) -> str:
    h = hashlib.sha256()
    for i in range(len(ds)):
        sample = ds[i]
        for name in FIELDS:
            h.update(name.encode())
            h.update(sample[name].dtype.str.encode())  # type: ignore[literal-required]
            h.update(np.ascontiguousarray(sample[name]).tobytes())  # type: ignore[literal-required]
    return h.hexdigest()


def assert_same_sample(a: Any, b: Any) -> None:
    assert set(a) == set(b) == set(FIELDS)
    for name in FIELDS:
        assert a[name].dtype == b[name].dtype, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# ---- strategies -------------------------------------------------------------------------------


@dataclass
class Case:
    packed: Packed
    samples_per_shard: int


@st.composite
def cases(draw: st.DrawFn) -> Case:
    seq_len = draw(st.integers(2, 24))
    window = draw(st.integers(0, 2 * seq_len))
    overlap = draw(st.none() | st.integers(0, seq_len - 1))
    lengths = draw(st.lists(st.integers(0, 3 * seq_len + 2), max_size=10))
    seed = draw(st.integers(0, 2**32 - 1))
    vocab_size = draw(st.sampled_from([32000, 1 << 16, 100_000]))
    shuffle = draw(st.none() | st.integers(0, 1000))
    packed = pack(
        random_docs(lengths, seed, vocab_size),
        seq_len,
        window,
        overlap=overlap,
        pad_id=draw(st.integers(0, 2)),
        vocab_size=vocab_size,
        shuffle_seed=shuffle,
    )
    return Case(packed, draw(st.integers(1, 4)))


@st.composite
def attention_cases(draw: st.DrawFn) -> Case:
    """Overlap = W < L (the default), so every predictor sees what it sees in one unbroken pass;
    or W = 0 with documents that fit a sample."""
    seq_len = draw(st.integers(2, 16))
    window = draw(st.integers(0, seq_len - 1))
    longest = 4 * seq_len if window > 0 else seq_len
    lengths = draw(st.lists(st.integers(0, longest), max_size=6))
    packed = pack(
        random_docs(lengths, draw(st.integers(0, 2**32 - 1)), 32000),
        seq_len,
        window,
        shuffle_seed=draw(st.integers(0, 1000)),
    )
    assert window == 0 or packed.overlap_tokens == window
    return Case(packed, draw(st.integers(1, 3)))


def open_case(case: Case, directory: str) -> bpetok.ShardDataset:
    write_shards(Path(directory), case.packed, case.samples_per_shard)
    return bpetok.ShardDataset(directory)


# ---- the dataset ------------------------------------------------------------------------------


@settings(max_examples=150)
@given(cases())
def test_samples_match_the_format(case: Case) -> None:
    packed = case.packed
    L = packed.seq_len
    with tempfile.TemporaryDirectory() as directory:
        ds = open_case(case, directory)
        assert len(ds) == len(packed.samples)
        assert ds.seq_len == L and ds.window == packed.window
        assert ds.num_shards == -(-len(packed.samples) // case.samples_per_shard)
        assert ds.token_dtype == (np.dtype("<u2") if packed.vocab_size <= 1 << 16 else np.dtype("<u4"))
        assert ds.manifest["options"]["overlap_tokens"] == packed.overlap_tokens
        for i, (tokens, segments) in enumerate(packed.samples):
            sample = ds[i]
            assert set(sample) == set(FIELDS)
            for name in FIELDS:
                array = sample[name]  # type: ignore[literal-required]
                assert isinstance(array, np.ndarray) and array.dtype == DTYPES[name], name
                assert array.ndim == 1 and array.flags.writeable, name
            G = len(segments)
            assert [len(sample[f]) for f in FIELDS] == [L, L, L, G + 1, G, G]  # type: ignore[literal-required]
            expected = reference_sample(tokens, segments, L)
            for name in FIELDS:
                assert sample[name].tolist() == expected[name], name  # type: ignore[literal-required]
            assert_same_sample(ds[i - len(ds)], sample)


@settings(max_examples=150)
@given(cases())
def test_documents_reconstruct_from_targets(case: Case) -> None:
    """Every document comes back from the non-context parts of its segments, each position once;
    every token but a document's first is a target exactly once; context repeats the document."""
    packed = case.packed
    with tempfile.TemporaryDirectory() as directory:
        ds = open_case(case, directory)
        rebuilt = [np.full(len(d), -1, dtype=np.int64) for d in packed.docs]
        covered = [np.zeros(len(d), dtype=np.int64) for d in packed.docs]
        targeted = [np.zeros(len(d), dtype=np.int64) for d in packed.docs]
        for i in range(len(ds)):
            s = ds[i]
            cu = s["cu_seqlens"]
            for g, (doc_id, doc_start) in enumerate(zip(s["doc_ids"], s["doc_starts"], strict=True)):
                lo, hi = int(cu[g]), int(cu[g + 1])
                if doc_id < 0:
                    assert np.all(s["labels"][lo:hi] == -100)
                    assert np.all(s["input_ids"][lo:hi] == packed.pad_id) and doc_start == 0
                    continue
                doc = packed.docs[doc_id]
                span = slice(int(doc_start), int(doc_start) + hi - lo)
                np.testing.assert_array_equal(s["input_ids"][lo:hi], doc[span])  # context included
                context = 0 if doc_start == 0 else packed.overlap_tokens
                own = slice(int(doc_start) + context, int(doc_start) + hi - lo)
                rebuilt[doc_id][own] = s["input_ids"][lo + context : hi]
                covered[doc_id][own] += 1
                is_target = s["labels"][lo:hi] != -100
                targeted[doc_id][span] += is_target
                np.testing.assert_array_equal(s["labels"][lo:hi][is_target], doc[span][is_target])
        for doc, got, cov, tgt in zip(packed.docs, rebuilt, covered, targeted, strict=True):
            assert got.tolist() == doc.tolist()
            assert np.all(cov == 1)
            assert tgt[:1].tolist() == [0] * min(1, len(doc)) and np.all(tgt[1:] == 1)


def _write_explicit(directory: Path, docs: list[list[int]], samples: list[list[Segment]], L: int) -> None:
    packed = Packed(L, 3, None, 0, 32000, [np.array(d) for d in docs])
    for segments in samples:
        tokens = np.zeros(L, dtype=np.int64)
        for start, length, _, doc_id, doc_start in segments:
            if doc_id >= 0:
                tokens[start : start + length] = docs[doc_id][doc_start : doc_start + length]
        packed.samples.append((tokens, segments))
    write_shards(directory, packed)


def test_worked_examples_of_packing_md(tmp_path: Path) -> None:
    """The two tables in docs/packing.md, "Labels, positions and boundaries"."""
    _write_explicit(
        tmp_path,
        [[1, 50, 51, 2], [1, 60, 2], list(range(100, 120))],
        [[(0, 4, 0, 0, 0), (4, 3, 0, 1, 0), (7, 1, 0, -1, 0)], [(0, 8, 3, 2, 5)]],
        8,
    )
    ds = bpetok.ShardDataset(tmp_path)
    two = ds[0]
    assert two["input_ids"].tolist() == [1, 50, 51, 2, 1, 60, 2, 0]
    assert two["labels"].tolist() == [-100, 50, 51, 2, -100, 60, 2, -100]
    assert two["position_ids"].tolist() == [0, 1, 2, 3, 0, 1, 2, 0]
    assert two["cu_seqlens"].tolist() == [0, 4, 7, 8]
    assert two["doc_ids"].tolist() == [0, 1, -1] and two["doc_starts"].tolist() == [0, 0, 0]
    chunk = ds[1]
    assert chunk["input_ids"].tolist() == list(range(105, 113))
    assert chunk["labels"].tolist() == [-100, -100, -100, 108, 109, 110, 111, 112]
    assert chunk["position_ids"].tolist() == list(range(8))
    assert chunk["cu_seqlens"].tolist() == [0, 8]
    assert chunk["doc_ids"].tolist() == [2] and chunk["doc_starts"].tolist() == [5]


@pytest.fixture
def shard_dir(tmp_path: Path) -> Path:
    """Three shards (3 + 3 + 1 samples) of 20 documents, L = 16, W = 4."""
    lengths = [0, 5, 40, 16, 1, 17, 3, 33, 9, 2, 50, 7, 0, 12, 15, 4, 6, 8, 21, 2]
    packed = pack(random_docs(lengths, 7, 32000), 16, 4, shuffle_seed=3)
    write_shards(tmp_path / "out", packed, samples_per_shard=len(packed.samples) // 2 - 1)
    return tmp_path / "out"


def test_indexing(shard_dir: Path) -> None:
    ds = bpetok.ShardDataset(str(shard_dir))
    n = len(ds)
    assert n > 5 and ds.num_shards == 3
    for i in range(n):
        assert_same_sample(ds[i - n], ds[i])
        assert_same_sample(ds[np.int64(i)], ds[i])
    for bad in (n, n + 1, -n - 1, 10**30):
        with pytest.raises(IndexError, match="out of range"):
            ds[bad]
    for wrong in ("0", 1.0, None, slice(0, 2)):
        with pytest.raises(TypeError, match="integers"):
            ds[wrong]  # type: ignore[index]
    assert "ShardDataset" in repr(ds) and str(n) in repr(ds)


def test_empty_output(tmp_path: Path) -> None:
    write_shards(tmp_path, pack([], 8, 0))
    ds = bpetok.ShardDataset(tmp_path)
    assert len(ds) == 0 and ds.num_shards == 0
    with pytest.raises(IndexError):
        ds[0]
    with pytest.raises(IndexError):
        ds[-1]


def test_only_listed_shards_count(shard_dir: Path) -> None:
    full = bpetok.ShardDataset(shard_dir)
    for kind in ("tokens", "segments", "sample_index"):  # a foreign or unfinished write
        shutil.copy(shard_dir / f"shard-00000.{kind}.npy", shard_dir / f"shard-00099.{kind}.npy")
    (shard_dir / "shard-00003.tokens.npy.tmp").write_bytes(b"half a shard")
    assert len(bpetok.ShardDataset(shard_dir)) == len(full)
    manifest = json.loads((shard_dir / "manifest.json").read_text())
    last = manifest["shards"].pop()
    (shard_dir / "manifest.json").write_text(json.dumps(manifest))
    fewer = bpetok.ShardDataset(shard_dir)
    assert len(fewer) == len(full) - last["samples"] and fewer.num_shards == full.num_shards - 1
    for i in range(len(fewer)):
        assert_same_sample(fewer[i], full[i])


def test_pickle_round_trip(shard_dir: Path) -> None:
    ds = bpetok.ShardDataset(shard_dir)
    fresh = pickle.dumps(ds)
    before = [ds[i] for i in range(len(ds))]  # opens the memory maps
    data = pickle.dumps(ds)
    assert data == fresh  # open maps are not pickled
    assert len(data) < 4000 and b"manifest" not in data.replace(b"manifest.json", b"")
    copy = pickle.loads(data)
    assert len(copy) == len(ds) and copy.seq_len == ds.seq_len and copy.window == ds.window
    assert copy.token_dtype == ds.token_dtype and copy.num_shards == ds.num_shards
    for i, sample in enumerate(before):
        assert_same_sample(copy[i], sample)
    assert copy.manifest == ds.manifest
    assert sample_digest(pickle.loads(pickle.dumps(copy))) == sample_digest(ds)


def test_manifest_rewritten_after_pickling(shard_dir: Path) -> None:
    data = pickle.dumps(bpetok.ShardDataset(shard_dir))
    manifest = json.loads((shard_dir / "manifest.json").read_text())
    manifest["options"]["seed"] = 1
    (shard_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardFormatError, match="changed since"):
        pickle.loads(data).manifest  # noqa: B018


def test_threads(shard_dir: Path) -> None:
    expected = [bpetok.ShardDataset(shard_dir)[i] for i in range(len(bpetok.ShardDataset(shard_dir)))]
    ds = bpetok.ShardDataset(shard_dir)  # no shard open yet: the threads race to open them

    def read(seed: int) -> list[tuple[int, Any]]:
        order = list(range(len(ds))) * 5
        random.Random(seed).shuffle(order)
        return [(i, ds[i]) for i in order]

    with ThreadPoolExecutor(8) as pool:
        for results in pool.map(read, range(16)):
            for i, sample in results:
                assert_same_sample(sample, expected[i])


def _digest_in_child(ds: bpetok.ShardDataset, queue: Any) -> None:
    try:
        digest = sample_digest(ds)
        state = ds._state
        queue.put((digest, state is not None and state.pid == os.getpid()))
    except BaseException as err:
        queue.put((repr(err), False))


def _digest_of(ds: bpetok.ShardDataset) -> str:
    return sample_digest(ds)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork with threads, Python 3.12+
def test_after_fork(shard_dir: Path) -> None:
    ds = bpetok.ShardDataset(shard_dir)
    expected = sample_digest(ds)  # the parent has every shard open
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_digest_in_child, args=(ds, queue))
    child.start()
    digest, reopened = queue.get(timeout=120)
    child.join(timeout=120)
    assert child.exitcode == 0
    assert digest == expected and reopened
    with ctx.Pool(2) as pool:  # the dataset pickled to workers, as DataLoader does with spawn
        assert pool.map(_digest_of, [ds, ds, pickle.loads(pickle.dumps(ds))]) == [expected] * 3
    assert sample_digest(ds) == expected


# ---- errors -----------------------------------------------------------------------------------


def _edit_manifest(directory: Path, **changes: Any) -> None:
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest.update(changes)
    (directory / "manifest.json").write_text(json.dumps(manifest))


def test_missing_manifest(shard_dir: Path, tmp_path: Path) -> None:
    (shard_dir / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"manifest\.json: not found"):
        bpetok.ShardDataset(shard_dir)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        bpetok.ShardDataset(tmp_path / "nowhere")


def test_wrong_format_or_version(shard_dir: Path) -> None:
    _edit_manifest(shard_dir, format_version=2)
    with pytest.raises(ShardFormatError, match=r"manifest\.json: format_version 2 is not supported"):
        bpetok.ShardDataset(shard_dir)
    _edit_manifest(shard_dir, format_version=1, format="megatron")
    with pytest.raises(ShardFormatError, match=r"format is 'megatron', expected 'bpetok-shards'"):
        bpetok.ShardDataset(shard_dir)
    _edit_manifest(shard_dir, format="bpetok-shards", token_dtype="int8")
    with pytest.raises(ShardFormatError, match="token_dtype"):
        bpetok.ShardDataset(shard_dir)
    _edit_manifest(shard_dir, token_dtype="uint16", options={"window": 4})
    with pytest.raises(ShardFormatError, match=r"options\.seq_len is missing"):
        bpetok.ShardDataset(shard_dir)
    (shard_dir / "manifest.json").write_text("{not json")
    with pytest.raises(ShardFormatError, match="not valid UTF-8 JSON"):
        bpetok.ShardDataset(shard_dir)
    assert issubclass(ShardFormatError, ValueError)


def test_missing_shard_file(shard_dir: Path) -> None:
    (shard_dir / "shard-00001.segments.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"shard-00001\.segments\.npy: listed in .*manifest\.json"):
        bpetok.ShardDataset(shard_dir)


def test_truncated_shard_file(shard_dir: Path) -> None:
    path = shard_dir / "shard-00002.tokens.npy"
    data = path.read_bytes()
    path.write_bytes(data[:-2])
    with pytest.raises(ShardFormatError, match=rf"shard-00002\.tokens\.npy: {len(data) - 2} bytes, but"):
        bpetok.ShardDataset(shard_dir)


def test_file_changed_after_open(shard_dir: Path) -> None:
    ds = bpetok.ShardDataset(shard_dir)  # nothing mapped yet
    path = shard_dir / "shard-00000.tokens.npy"
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(ShardFormatError, match=r"shard-00000\.tokens\.npy: .* bytes, but"):
        ds[0]


def test_array_of_the_wrong_shape(shard_dir: Path) -> None:
    path = shard_dir / "shard-00000.sample_index.npy"
    array = np.load(path)
    np.save(path, array[:-1].astype("<i4"))  # another dtype and shape, size fixed up below
    manifest = json.loads((shard_dir / "manifest.json").read_text())
    manifest["shards"][0]["files"]["sample_index"]["size"] = path.stat().st_size
    (shard_dir / "manifest.json").write_text(json.dumps(manifest))
    ds = bpetok.ShardDataset(shard_dir)
    with pytest.raises(ShardFormatError, match=r"shard-00000\.sample_index\.npy: holds <i4"):
        ds[0]


# ---- collate ----------------------------------------------------------------------------------


@settings(max_examples=100)
@given(cases(), st.data())
def test_collate_flattened(case: Case, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as directory:
        ds = open_case(case, directory)
        if len(ds) == 0:
            return
        picks = data.draw(st.lists(st.integers(0, len(ds) - 1), min_size=1, max_size=5))
        samples = [ds[i] for i in picks]
    L = ds.seq_len
    batch = bpetok.collate_flattened(samples)
    N = L * len(samples)
    for name in ("input_ids", "labels", "position_ids"):
        assert batch[name].shape == (1, N) and batch[name].dtype == np.int64, name  # type: ignore[literal-required]
        expected = np.concatenate([s[name] for s in samples])  # type: ignore[literal-required]
        np.testing.assert_array_equal(batch[name][0], expected)  # type: ignore[literal-required]
    cu = batch["cu_seq_lens_q"]
    assert cu.dtype == np.int32 and cu.ndim == 1
    np.testing.assert_array_equal(batch["cu_seq_lens_k"], cu)
    shifted = [0] + [int(b) + n * L for n, s in enumerate(samples) for b in s["cu_seqlens"][1:]]
    assert cu.tolist() == shifted and cu[-1] == N
    seg_lengths = np.diff(cu)
    assert type(batch["max_length_q"]) is int and type(batch["max_length_k"]) is int
    assert batch["max_length_q"] == batch["max_length_k"] == int(seg_lengths.max())
    doc_ids = np.concatenate([s["doc_ids"] for s in samples])
    positions, labels = batch["position_ids"][0], batch["labels"][0]
    for g, (lo, hi) in enumerate(zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True)):
        assert positions[lo:hi].tolist() == list(range(hi - lo))
        assert labels[lo] == -100
        if doc_ids[g] < 0:
            assert np.all(labels[lo:hi] == -100)
    # context positions are never targets
    starts = np.concatenate([s["doc_starts"] for s in samples])
    for g in np.flatnonzero(starts > 0):
        lo = int(cu[g])
        assert np.all(labels[lo : lo + case.packed.overlap_tokens] == -100)

    dropped = bpetok.collate_flattened(samples, drop_padding=True)
    keep = np.repeat(doc_ids >= 0, seg_lengths)
    for name in ("input_ids", "labels", "position_ids"):
        np.testing.assert_array_equal(dropped[name][0], batch[name][0][keep])  # type: ignore[literal-required]
    kept = seg_lengths[doc_ids >= 0]
    assert dropped["cu_seq_lens_q"].tolist() == [0, *np.cumsum(kept).tolist()]
    assert dropped["cu_seq_lens_q"].dtype == np.int32
    assert dropped["max_length_q"] == (int(kept.max()) if len(kept) else 0)


def test_collate_arguments(shard_dir: Path) -> None:
    ds = bpetok.ShardDataset(shard_dir)
    with pytest.raises(ValueError, match="return_tensors"):
        bpetok.collate_flattened([ds[0]], return_tensors="tf")
    with pytest.raises(ValueError, match="at least one"):
        bpetok.collate_flattened([])
    bad = dict(ds[0])
    bad["cu_seqlens"] = bad["cu_seqlens"][:-1]
    with pytest.raises(ValueError, match=r"samples\[1\]"):
        bpetok.collate_flattened([ds[0], bad])
    no_docs = {k: v for k, v in ds[0].items() if k != "doc_ids"}
    with pytest.raises(ValueError, match="doc_ids"):
        bpetok.collate_flattened([no_docs], drop_padding=True)


def test_collate_torch(shard_dir: Path) -> None:
    ds = bpetok.ShardDataset(shard_dir)
    samples = [ds[0], ds[1]]
    try:
        import torch  # type: ignore[import-not-found]
    except ImportError:
        with pytest.raises(ImportError, match="needs PyTorch"):
            bpetok.collate_flattened(samples, return_tensors="pt")
        return
    batch = bpetok.collate_flattened(samples, return_tensors="pt")
    reference = bpetok.collate_flattened(samples)
    assert batch["input_ids"].dtype == torch.int64 and batch["cu_seq_lens_q"].dtype == torch.int32
    for name in ("input_ids", "labels", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k"):
        np.testing.assert_array_equal(batch[name].numpy(), reference[name])  # type: ignore[literal-required]
    assert batch["max_length_q"] == reference["max_length_q"]


# ---- the attention reference ------------------------------------------------------------------


@settings(max_examples=120)
@given(attention_cases())
def test_sliding_window_attention_matches_whole_documents(case: Case) -> None:
    packed = case.packed
    with tempfile.TemporaryDirectory() as directory:
        ds = open_case(case, directory)
        samples = [ds[i] for i in range(len(ds))]
    checked = sum(assert_attention_matches_whole_documents(s, packed.docs, packed.window) for s in samples)
    assert checked == sum(max(0, len(d) - 1) for d in packed.docs)  # every target, once
    if samples:  # the same over one flattened row, with cu_seq_lens_q
        batch = bpetok.collate_flattened(samples)
        row = {
            "input_ids": batch["input_ids"][0],
            "labels": batch["labels"][0],
            "position_ids": batch["position_ids"][0],
            "cu_seqlens": batch["cu_seq_lens_q"],
            "doc_ids": np.concatenate([s["doc_ids"] for s in samples]),
            "doc_starts": np.concatenate([s["doc_starts"] for s in samples]),
        }
        assert assert_attention_matches_whole_documents(row, packed.docs, packed.window) == checked


def test_attention_check_catches_short_overlap() -> None:
    """The reference check has teeth: with overlap 1 < W = 3 a continuation chunk's predictors see
    less than in one pass (docs/packing.md, "What a smaller overlap loses")."""
    doc = np.arange(100, 120)
    short = pack([doc], 8, 3, overlap=1)
    with tempfile.TemporaryDirectory() as directory:
        ds = open_case(Case(short, 2), directory)
        with pytest.raises(AssertionError):
            for i in range(len(ds)):
                assert_attention_matches_whole_documents(ds[i], short.docs, 3)
    exact = pack([doc], 8, 3)  # overlap W = 3, the table in docs/packing.md
    assert [c for c in chunk_document(20, 8, exact.overlap_tokens)] == [
        (0, 8, 0),
        (5, 8, 3),
        (10, 8, 3),
        (15, 5, 3),
    ]
    assert chunk_document(20, 8, overlap_tokens(8, 0, None)) == [(0, 8, 0), (7, 8, 1), (14, 6, 1)]
    with tempfile.TemporaryDirectory() as directory:
        ds = open_case(Case(exact, 2), directory)
        assert (
            sum(assert_attention_matches_whole_documents(ds[i], exact.docs, 3) for i in range(len(ds))) == 19
        )


def test_import_bpetok_does_not_import_numpy() -> None:
    """The reader imports numpy on first use, so tokenizer-only users keep a quick `import bpetok`."""
    code = "import sys, bpetok; assert 'numpy' not in sys.modules; bpetok.ShardDataset; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
