"""Concurrency: one Tokenizer shared by eight threads; tokenizers in children made by ``os.fork``
and by multiprocessing's ``fork``, ``spawn`` and ``forkserver`` start methods (after the parent
ran parallel batches, and while it runs one); ``ShardDataset`` read from threads, from
multiprocessing pools and from a torch ``DataLoader`` with workers (when torch is installed).

Every test compares with results computed sequentially in this process, and every wait has a
timeout, so a wrong id fails a test and a deadlock fails it too instead of hanging the suite.
"""

from __future__ import annotations

import collections
import hashlib
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import bpetok
import numpy as np
import pytest
from conftest import Vocab

TIMEOUT = 120.0
"""Seconds any one wait may take before the test fails as a deadlock (generous: 2 shared cores)."""

WORDS = (
    "the of and to in is was for that on with as by at from his an were are which this be has "
    "tokenizer sliding window attention packing shard dataset ids décembre naïve Zürich "
    "日本語 文章 カタカナ 中文 한국어 Ελληνικά русский \U0001f600 \u2581 \u00a0 \t\n  "
    "def return self import numpy np.array(x) { } [ ] ( ) == != <= >= -> ::"
).split(" ")


def make_texts(seed: int = 8) -> list[str | bytes]:
    """Mixed texts, deterministic: short ones (encoded with the GIL held), long ones (over the
    2 KiB at which the binding releases the GIL, up to 200 KB so that threads overlap there),
    empty ones, and bytes with invalid UTF-8."""
    rng = random.Random(seed)
    texts: list[str | bytes] = ["", " ", "Hello, world!", "x" * 5000]
    for n in [3, 10, 40, 300, 700, 2000, 6000, 30_000, 60_000] * 3:
        texts.append(" ".join(rng.choice(WORDS) for _ in range(n)))
    texts.append(" ".join(rng.choice(WORDS) for _ in range(200_000 // 6)))
    texts.append(b"bytes \xff\xfe invalid \xc3 utf-8 " * 300)
    rng.shuffle(texts)
    return texts


TEXTS = make_texts()


def expected_ids(tok: bpetok.Tokenizer) -> list[list[int]]:
    return [tok.encode(t) for t in TEXTS]


def wait_all(futures: list[Any]) -> list[Any]:
    deadline = time.monotonic() + TIMEOUT
    return [f.result(timeout=max(1.0, deadline - time.monotonic())) for f in futures]


# ---- threads ----------------------------------------------------------------------------------


def test_eight_threads_share_one_tokenizer(vocab: Vocab) -> None:
    tok = vocab.tok
    ids = expected_ids(tok)
    str_texts = [t for t in TEXTS if isinstance(t, str)]
    assert [tok.encode(t) for t in str_texts] == vocab.sp.encode(str_texts)  # the reference
    decoded = [tok.decode(i) for i in ids]
    flat = np.concatenate([np.asarray(i, dtype=tok.dtype) for i in ids])

    barrier = threading.Barrier(8, timeout=TIMEOUT)

    def work(k: int) -> tuple[Any, ...]:
        barrier.wait()  # all eight start together, so their GIL-released encodes overlap
        order = list(range(k, len(TEXTS))) + list(range(k))  # each thread from another start
        texts = [TEXTS[i] for i in order]
        return (
            order,
            [tok.encode(t) for t in texts],
            tok.encode_batch(texts, num_threads=(1, 2, 4)[k % 3]),
            [tok.decode(ids[i]) for i in order],
            tok.decode_batch([ids[i] for i in order], num_threads=2),
            tok.encode_batch_to_numpy(TEXTS, num_threads=1 + k % 2)[0],
        )

    with ThreadPoolExecutor(8) as pool:
        results = wait_all([pool.submit(work, k) for k in range(8)])
    for k, (order, one_by_one, batch, one_decoded, batch_decoded, array) in enumerate(results):
        want = [ids[i] for i in order]
        assert one_by_one == want, f"thread {k}: encode differs from sequential encoding"
        assert batch == want, f"thread {k}: encode_batch differs from sequential encoding"
        assert one_decoded == batch_decoded == [decoded[i] for i in order], f"thread {k}: decode differs"
        assert np.array_equal(array, flat), f"thread {k}: encode_batch_to_numpy differs"


def test_threads_share_the_default_tokenizer() -> None:
    tok = bpetok.Tokenizer.default()
    ids = expected_ids(tok)
    with ThreadPoolExecutor(8) as pool:
        results = wait_all([pool.submit(lambda: [bpetok.encode(t) for t in TEXTS]) for _ in range(8)])
    assert results == [ids] * 8


# ---- children ---------------------------------------------------------------------------------


class Busy:
    """A thread that keeps running parallel batches on `tok` until stopped, so that a fork
    happens while other threads of the parent are inside the native code (holding whatever it
    holds)."""

    def __init__(self, tok: bpetok.Tokenizer) -> None:
        self._stop = threading.Event()
        self._texts = TEXTS[:12]
        self._thread = threading.Thread(target=self._run, args=(tok,), daemon=True)

    def _run(self, tok: bpetok.Tokenizer) -> None:
        while not self._stop.is_set():
            tok.encode_batch(self._texts, num_threads=2)
            tok.encode(self._texts[0])

    def __enter__(self) -> Busy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=TIMEOUT)


def wait_child(pid: int) -> int:
    """The exit status of child `pid`; kills it and fails the test if it takes over TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"child {pid} did not finish within {TIMEOUT} s: a deadlock after fork?")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork with threads, Python 3.12+
def test_os_fork_after_and_during_parallel_batches(vocab: Vocab) -> None:
    tok = vocab.tok
    ids = expected_ids(tok)
    assert tok.encode_batch(TEXTS, num_threads=4) == ids  # threads started and ended, scratch pooled
    few = list(range(0, len(TEXTS), 5))
    statuses = []
    with Busy(tok):
        for _ in range(10):
            pid = os.fork()
            if pid == 0:  # the child: only this thread exists now
                try:
                    want = [ids[i] for i in few]
                    ok = [tok.encode(TEXTS[i]) for i in few] == want
                    ok = ok and tok.encode_batch([TEXTS[i] for i in few], num_threads=2) == want
                    ok = ok and bpetok.encode("fork") == bpetok.Tokenizer.default().encode("fork")
                    os._exit(0 if ok else 3)
                except BaseException:
                    os._exit(4)
            statuses.append(wait_child(pid))
    assert statuses == [0] * 10, "a forked child encoded differently (3) or raised (4)"


FORK_WHILE_LOADING = """
import os, sys, time
from bpetok import _tokenizer
_tokenizer._DEFAULT_LOCK.acquire()  # as a thread loading the default tokenizer holds it
pid = os.fork()
if pid == 0:
    os._exit(0 if _tokenizer.encode("fork") == _tokenizer.Tokenizer.default().encode("fork") else 3)
deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        sys.exit(os.waitstatus_to_exitcode(status))
    time.sleep(0.02)
os.kill(pid, 9)
sys.exit("the child hung")
"""


def test_fork_while_the_default_tokenizer_is_loading() -> None:
    """A fresh process whose default-tokenizer lock is held at the fork: the child must load the
    default tokenizer itself instead of waiting for a thread it does not have."""
    run = subprocess.run(
        [sys.executable, "-c", FORK_WHILE_LOADING, "30"], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert run.returncode == 0, run.stderr


# Pool workers: module-level functions, so that spawn and forkserver children can find them.

_WORKER_TOKENIZER: bpetok.Tokenizer | None = None
_INHERITED: bpetok.Tokenizer | None = None  # set in the parent before a fork


def _init_worker(tok: bpetok.Tokenizer | None) -> None:
    global _WORKER_TOKENIZER
    _WORKER_TOKENIZER = tok if tok is not None else _INHERITED


def _encode_in_worker(indices: list[int]) -> tuple[int, list[list[int]], list[list[int]]]:
    tok = _WORKER_TOKENIZER
    assert tok is not None
    texts = [TEXTS[i] for i in indices]
    return os.getpid(), [tok.encode(t) for t in texts], tok.encode_batch(texts, num_threads=2)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
@pytest.mark.parametrize("how", ["pickled", "inherited"])
def test_pool_children_encode_like_the_parent(vocab: Vocab, method: str, how: str) -> None:
    """The tokenizer reaches the workers pickled (any start method) or inherited through fork
    (the parent having run a parallel batch first)."""
    if how == "inherited" and method != "fork":
        pytest.skip("only a forked child inherits the parent's objects")
    global _INHERITED
    tok = vocab.tok
    ids = expected_ids(tok)
    assert tok.encode_batch(TEXTS, num_threads=4) == ids
    _INHERITED = tok
    ctx = multiprocessing.get_context(method)
    tasks = [list(range(k, len(TEXTS), 6)) for k in range(6)]
    pool = ctx.Pool(2, initializer=_init_worker, initargs=(tok if how == "pickled" else None,))
    try:
        results = pool.map_async(_encode_in_worker, tasks, chunksize=1).get(timeout=TIMEOUT)
    finally:
        pool.terminate()
        pool.join()
        _INHERITED = None
    for indices, (pid, one_by_one, batch) in zip(tasks, results, strict=True):
        assert pid != os.getpid()
        assert one_by_one == batch == [ids[i] for i in indices]


def test_pickled_tokenizer_is_an_equal_copy(v3: Vocab) -> None:
    import pickle

    default = bpetok.Tokenizer.default()
    assert pickle.loads(pickle.dumps(default)) is default  # the embedded one stays a singleton
    copy = pickle.loads(pickle.dumps(v3.tok))
    assert copy is not v3.tok and copy.sha256 == v3.tok.sha256
    # A file tokenizer travels as its model file: about its size, not more.
    assert len(pickle.dumps(v3.tok)) < len(v3.tok.model_bytes) + 1000
    assert expected_ids(copy) == expected_ids(v3.tok)


# ---- ShardDataset -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small pack (about 130 samples of 64 tokens in 9 shards, made in well under a second)."""
    root = tmp_path_factory.mktemp("concurrency")
    rng = random.Random(3)
    with open(root / "docs.jsonl", "w", encoding="utf-8") as f:
        for _ in range(300):
            n = rng.choice([1, 2, 5, 12, 30, 80])
            f.write(json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(n))}) + "\n")
    bpetok.pack(root / "docs.jsonl", root / "out", seq_len=64, window=16, samples_per_shard=16)
    return root / "out"


def digest(sample: Any) -> str:
    h = hashlib.sha256()
    for name in sorted(sample):
        value = np.asarray(sample[name])
        h.update(name.encode() + value.dtype.str.encode() + value.tobytes())
    return h.hexdigest()


def sequential_digests(path: Path) -> list[str]:
    ds = bpetok.ShardDataset(path)
    return [digest(ds[i]) for i in range(len(ds))]


_WORKER_DATASET: bpetok.ShardDataset | None = None


def _init_dataset_worker(ds: bpetok.ShardDataset) -> None:
    global _WORKER_DATASET
    _WORKER_DATASET = ds


def _read_in_worker(indices: list[int]) -> list[tuple[int, str]]:
    ds = _WORKER_DATASET
    assert ds is not None
    return [(i, digest(ds[i])) for i in indices]


def test_dataset_from_eight_threads(shards: Path) -> None:
    expected = sequential_digests(shards)
    ds = bpetok.ShardDataset(shards)  # nothing opened yet: the threads race to open the shards
    barrier = threading.Barrier(8, timeout=TIMEOUT)

    def read(k: int) -> list[str]:
        barrier.wait()
        order = list(range(k, len(ds))) + list(range(k))
        got = {i: digest(ds[i]) for i in order}
        return [got[i] for i in range(len(ds))]

    with ThreadPoolExecutor(8) as pool:
        assert wait_all([pool.submit(read, k) for k in range(8)]) == [expected] * 8


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_dataset_in_a_pool_reads_every_sample_once(shards: Path, method: str) -> None:
    expected = sequential_digests(shards)
    ds = bpetok.ShardDataset(shards)
    assert [digest(ds[i]) for i in range(len(ds))] == expected  # the parent has every shard mapped
    order = list(range(len(ds)))
    random.Random(1).shuffle(order)
    tasks = [order[k : k + 7] for k in range(0, len(order), 7)]
    ctx = multiprocessing.get_context(method)
    pool = ctx.Pool(3, initializer=_init_dataset_worker, initargs=(ds,))
    try:
        results = pool.map_async(_read_in_worker, tasks, chunksize=1).get(timeout=TIMEOUT)
    finally:
        pool.terminate()
        pool.join()
    read = [pair for result in results for pair in result]
    counts = collections.Counter(i for i, _ in read)
    assert sorted(counts) == list(range(len(ds))) and set(counts.values()) == {1}
    assert all(d == expected[i] for i, d in read)


def _loader_batches(ds: Any, method: str, shuffle: bool) -> Iterator[list[Any]]:
    import torch.utils.data

    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=5,
        shuffle=shuffle,
        num_workers=2,
        collate_fn=list,  # samples as they are: cu_seqlens and doc_ids vary in length
        multiprocessing_context=method,
        timeout=TIMEOUT,
        generator=torch.Generator().manual_seed(0),
    )
    yield from loader


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_dataset_in_a_torch_dataloader(shards: Path, method: str, shuffle: bool) -> None:
    pytest.importorskip("torch")
    expected = sequential_digests(shards)
    ds = bpetok.ShardDataset(shards)
    ds[0]  # the parent has a shard mapped before the workers start
    got = [digest(s) for batch in _loader_batches(ds, method, shuffle) for s in batch]
    if shuffle:
        assert collections.Counter(got) == collections.Counter(expected)  # each sample once
        assert got != expected
    else:
        assert got == expected
