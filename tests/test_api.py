"""The Python API as a user relies on it: the embedded vocabulary, vocabulary queries, pickling and
multiprocessing, threads, numpy output, batch order, errors on bad input and bad models, and
pathologically long inputs."""

from __future__ import annotations

import gc
import itertools
import multiprocessing
import pickle
import random
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import bpetok
import numpy as np
import pytest
import sentencepiece as spm
from conftest import Vocab
from hypothesis import given
from hypothesis import strategies as st
from mismatch import describe_mismatch
from sentencepiece import sentencepiece_model_pb2

TEXTS = [
    "",
    " ",
    "Hello, world!",
    "  leading and trailing spaces  ",
    "[INST] What is 2+2? [/INST] It is 4.</s>",
    "def f(x):\n\treturn x ** 2  # comment\n",
    "日本語の文章です。カタカナ、ひらがな、漢字。",
    "Emoji \U0001f600\U0001f680 and symbols \u2603 \u2581 \u00a0 \u3000",
    "<s> <unk> <0x41> typed as text",
    "x" * 5000,
]


def assert_same(sp: spm.SentencePieceProcessor, text: str | bytes, got: list[int]) -> None:
    expected = sp.encode(text)
    assert got == expected, f"encode({text[:200]!r}) differs\n" + describe_mismatch(sp, expected, got)


def synthetic_batch(vocab: Vocab, total_bytes: int, seed: int = 1234) -> list[str]:
    """Documents of varied length made from vocabulary pieces and a few rarer characters, deterministic."""
    rng = random.Random(seed)
    special = set(vocab.special_ids)
    normal = [i for i in range(vocab.size) if i not in special]
    extras = [" ", "  ", "\n", "\t", "\u3000", "\U0001f600", "\u00e9", "\u4e2d", "1", "22"]
    docs: list[str] = []
    size = 0
    while size < total_bytes:
        n = rng.choice([1, 3, 10, 50, 200, 1000, 3000])
        parts = [
            rng.choice(extras)
            if rng.random() < 0.1
            else vocab.sp.id_to_piece(rng.choice(normal)).replace("\u2581", " ")
            for _ in range(n)
        ]
        doc = "".join(parts)
        docs.append(doc)
        size += len(doc.encode("utf-8"))
    return docs


# ---- the embedded vocabulary ----------------------------------------------------------------------------


def test_module_encode_decode_match_mixtral(mixtral: Vocab) -> None:
    for text in TEXTS:
        assert_same(mixtral.sp, text, bpetok.encode(text))
        assert_same(mixtral.sp, text.encode("utf-8"), bpetok.encode(text.encode("utf-8")))
        ids = mixtral.sp.encode(text)
        assert bpetok.decode(ids) == mixtral.sp.decode(ids)
    assert bpetok.encode("hi", add_bos=True, add_eos=True) == mixtral.sp.encode(
        "hi", add_bos=True, add_eos=True
    )
    rng = random.Random(7)
    for _ in range(50):
        ids = [rng.randrange(mixtral.size) for _ in range(rng.randrange(40))]
        assert bpetok.decode(ids) == mixtral.sp.decode(ids)


def test_default_is_a_singleton_with_the_mixtral_model(mixtral: Vocab) -> None:
    default = bpetok.Tokenizer.default()
    assert default is bpetok.Tokenizer.default()
    assert isinstance(default, bpetok.Tokenizer)
    assert default.model_bytes == mixtral.path.read_bytes()
    assert default.encode(TEXTS[4]) == mixtral.sp.encode(TEXTS[4])


def test_default_singleton_under_threads() -> None:
    """Threads racing for the first Tokenizer.default() all get the same object (in a fresh interpreter)."""
    script = textwrap.dedent(
        """
        import threading, bpetok
        barrier = threading.Barrier(8)
        got = []
        def get():
            barrier.wait()
            got.append(bpetok.Tokenizer.default())
        threads = [threading.Thread(target=get) for _ in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        assert len(got) == 8 and all(t is got[0] for t in got), got
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout + result.stderr


# ---- vocabulary queries ---------------------------------------------------------------------------------


def test_vocabulary_queries(vocab: Vocab) -> None:
    sp, tok = vocab.sp, vocab.tok
    assert tok.vocab_size() == sp.vocab_size() == len(tok)
    assert tok.bos_id() == sp.bos_id()
    assert tok.eos_id() == sp.eos_id()
    assert tok.unk_id() == sp.unk_id()
    assert tok.pad_id() == sp.pad_id()
    pieces = [sp.id_to_piece(i) for i in range(sp.vocab_size())]
    assert [tok.id_to_piece(i) for i in range(tok.vocab_size())] == pieces
    assert [tok.piece_to_id(p) for p in pieces] == [sp.piece_to_id(p) for p in pieces]
    assert [tok.piece_to_id(p) for p in pieces] == list(range(len(pieces)))


@pytest.mark.parametrize(
    "piece", ["no such piece", "", "\u2581\u2581\u2581\u2581\u2581\u2581\u2581\u2581\u2581" * 9, "<0x100>"]
)
def test_piece_to_id_of_unknown_piece_is_unk(vocab: Vocab, piece: str) -> None:
    assert vocab.tok.piece_to_id(piece) == vocab.sp.piece_to_id(piece) == vocab.sp.unk_id()


def test_default_vocabulary_queries(mixtral: Vocab) -> None:
    default = bpetok.Tokenizer.default()
    assert default.vocab_size() == mixtral.sp.vocab_size()
    assert (default.bos_id(), default.eos_id(), default.unk_id(), default.pad_id()) == (
        mixtral.sp.bos_id(),
        mixtral.sp.eos_id(),
        mixtral.sp.unk_id(),
        mixtral.sp.pad_id(),
    )
    assert [default.id_to_piece(i) for i in range(0, mixtral.size, 97)] == [
        mixtral.sp.id_to_piece(i) for i in range(0, mixtral.size, 97)
    ]


# ---- pickling, multiprocessing, threads -----------------------------------------------------------------


def test_pickle_round_trip(vocab: Vocab) -> None:
    for tok in (vocab.tok, bpetok.Tokenizer.default()):
        for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
            clone = pickle.loads(pickle.dumps(tok, protocol=protocol))
            assert isinstance(clone, bpetok.Tokenizer)
            assert clone.model_bytes == tok.model_bytes
            assert clone.vocab_size() == tok.vocab_size()
            assert [clone.encode(t) for t in TEXTS] == [tok.encode(t) for t in TEXTS]
            ids = tok.encode(TEXTS[7])
            assert clone.decode(ids) == tok.decode(ids)


def test_spawn_pool_encodes_like_the_parent(v3: Vocab) -> None:
    default = bpetok.Tokenizer.default()
    ctx = multiprocessing.get_context("spawn")
    pool = ctx.Pool(2)
    try:
        # A bound method pickles its Tokenizer, so every task carries the tokenizer to a spawned worker.
        from_default = pool.map(default.encode, TEXTS, chunksize=1)
        from_file = pool.map(v3.tok.encode, TEXTS, chunksize=1)
        module_level = pool.map(bpetok.encode, TEXTS, chunksize=1)
    finally:
        pool.close()
        pool.join()
    assert from_default == [default.encode(t) for t in TEXTS]
    assert module_level == from_default
    assert from_file == [v3.tok.encode(t) for t in TEXTS] == [v3.sp.encode(t) for t in TEXTS]


def test_shared_across_threads(vocab: Vocab) -> None:
    tok = vocab.tok
    texts = [*TEXTS, *synthetic_batch(vocab, 300_000, seed=5)]
    ids = [tok.encode(t) for t in texts]
    assert ids == vocab.sp.encode(texts)

    def work(k: int) -> tuple[Any, ...]:
        barrier.wait()
        order = texts[k:] + texts[:k]  # each thread walks the texts from a different start
        return (
            [tok.encode(t) for t in order],
            tok.encode_batch(order, num_threads=2),
            [tok.decode(i) for i in ids],
            [tok.encode_to_numpy(t).tolist() for t in order[:20]],
        )

    barrier = threading.Barrier(4)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(4)))
    expected_decoded = [tok.decode(i) for i in ids]
    for k, (one_by_one, batch, decoded, arrays) in enumerate(results):
        expected = ids[k:] + ids[:k]
        assert one_by_one == expected
        assert batch == expected
        assert decoded == expected_decoded
        assert arrays == expected[:20]


# ---- numpy ----------------------------------------------------------------------------------------------


def test_encode_to_numpy(vocab: Vocab) -> None:
    tok = vocab.tok
    assert tok.dtype == np.dtype(np.uint16)
    for text in TEXTS:
        for flags in ({}, {"add_bos": True}, {"add_bos": True, "add_eos": True}):
            arr = tok.encode_to_numpy(text, **flags)
            assert isinstance(arr, np.ndarray)
            assert arr.dtype == np.uint16
            assert arr.ndim == 1
            assert arr.tolist() == tok.encode(text, **flags) == vocab.sp.encode(text, **flags)
            assert arr.flags.writeable
    arr = tok.encode_to_numpy("writable?")
    arr[:] = 0
    assert not arr.any()


def test_encode_batch_to_numpy(vocab: Vocab) -> None:
    tok = vocab.tok
    texts: list[str | bytes] = [*TEXTS, "", *TEXTS[::-1], b"bytes \xff too"]
    for num_threads in (None, 1, 2):
        ids, offsets = tok.encode_batch_to_numpy(texts, add_bos=True, num_threads=num_threads)
        assert ids.dtype == np.uint16
        assert offsets.dtype == np.int64
        assert ids.flags.writeable and offsets.flags.writeable
        assert offsets.shape == (len(texts) + 1,)
        assert offsets[0] == 0 and offsets[-1] == len(ids)
        assert (np.diff(offsets) >= 0).all()
        expected = [tok.encode(t, add_bos=True) for t in texts]
        assert [ids[offsets[i] : offsets[i + 1]].tolist() for i in range(len(texts))] == expected
        assert expected == vocab.sp.encode(texts, add_bos=True)
    ids, offsets = tok.encode_batch_to_numpy([])
    assert ids.shape == (0,) and offsets.tolist() == [0]


def test_encode_batch_to_numpy_of_a_long_text_on_threads(vocab: Vocab) -> None:
    """A text of several MB beside a short one: the long one is cut and its parts are written into
    the output by the threads in place, with sentencepiece's ids."""
    tok = vocab.tok
    long_text = "\n".join(TEXTS) * (5_000_000 // len("\n".join(TEXTS).encode()) + 1)
    texts = [long_text, TEXTS[3]]
    expected = vocab.sp.encode(texts, add_bos=True, add_eos=True)
    for num_threads in (1, 2, 3):
        ids, offsets = tok.encode_batch_to_numpy(texts, add_bos=True, add_eos=True, num_threads=num_threads)
        assert ids.dtype == tok.dtype
        assert offsets.tolist() == [0, len(expected[0]), len(expected[0]) + len(expected[1])]
        assert ids[: offsets[1]].tolist() == expected[0]
        assert ids[offsets[1] :].tolist() == expected[1]


def test_encode_batch_to_numpy_of_many_texts_filled_on_threads(vocab: Vocab) -> None:
    """Many texts whose ids make an output of about 2 MiB: the threads copy the texts' ids into it
    part by part, each at its own offset, and the array is the one thread's, text for text, however
    many threads are asked for."""
    tok = vocab.tok
    rng = random.Random(7)
    short = [t for t in TEXTS if len(t) < 100]
    texts = [" ".join(rng.sample(short, 3)) * rng.randint(1, 40) for _ in range(1500)]
    one, one_offsets = tok.encode_batch_to_numpy(texts, num_threads=1)
    assert one.nbytes > 1 << 20  # past the size from which threads fill the output
    expected = [tok.encode(t) for t in texts[::97]]
    for num_threads in (2, 3, 64):  # 64: more than the output is worth, and than this machine has
        ids, offsets = tok.encode_batch_to_numpy(texts, num_threads=num_threads)
        assert np.array_equal(offsets, one_offsets)
        assert np.array_equal(ids, one)
        assert [ids[offsets[i] : offsets[i + 1]].tolist() for i in range(0, len(texts), 97)] == expected


def test_encode_batch_to_numpy_of_many_short_texts_filled_on_threads(vocab: Vocab) -> None:
    """Over 100,000 texts of a few tokens each, more than 1 MiB of ids in all: the threads fill
    the output in runs of consecutive texts, and every text's ids land where its offsets say."""
    tok = vocab.tok
    rng = random.Random(11)
    words = [w for t in TEXTS for w in t.split() if w.isascii()][:300]
    texts = [" ".join(rng.choices(words, k=rng.randint(1, 4))) for _ in range(120_000)]
    one, one_offsets = tok.encode_batch_to_numpy(texts, num_threads=1)
    assert one.nbytes > 1 << 20
    expected = [tok.encode(t) for t in texts[::997]]
    for num_threads in (2, 3):
        ids, offsets = tok.encode_batch_to_numpy(texts, num_threads=num_threads)
        assert np.array_equal(offsets, one_offsets)
        assert np.array_equal(ids, one)
        assert [ids[offsets[i] : offsets[i + 1]].tolist() for i in range(0, len(texts), 997)] == expected


# CPython versions whose layout of a `str` the native module knows, and so reads in place.
READS_STR_IN_PLACE = sys.implementation.name == "cpython" and (3, 10) <= sys.version_info[:2] <= (3, 14)


class Text(str):
    """A str subclass: CPython lays its instances out differently, so they are copied to UTF-8."""


@pytest.mark.parametrize("num_threads", [1, 2])
def test_encode_batch_reads_texts_in_place(mixtral: Vocab, num_threads: int) -> None:
    """A str is read where it is: an ASCII one's characters are its UTF-8, and a non-ASCII one's
    UTF-8 is made by the thread that encodes it, in a buffer it reuses. A batch of either
    allocates little more than its output, where a batch of str subclasses (laid out otherwise)
    makes a UTF-8 copy of each text (freed within the call), as every non-ASCII batch did before."""
    import tracemalloc

    tok = mixtral.tok
    ascii_texts = [f"document {i}: " + "plain words of ASCII text " * 400 for i in range(400)]
    latin1_texts = [t.replace("words", "w\u00f6rds") for t in ascii_texts]
    cjk_texts = [t.replace("words", "\u6587\u5b57") for t in ascii_texts]
    subclass_texts = [Text(t) for t in latin1_texts]
    size = sum(map(len, ascii_texts))
    assert size > 4_000_000
    tok.encode_batch_to_numpy(ascii_texts[:2], num_threads=num_threads)  # tables built
    peaks = []
    for texts in (ascii_texts, latin1_texts, cjk_texts, subclass_texts):
        sizes = [sys.getsizeof(t) for t in texts[:50]]
        tracemalloc.start()
        ids, offsets = tok.encode_batch_to_numpy(texts, num_threads=num_threads)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        output = ids.nbytes + offsets.nbytes
        assert ids[offsets[7] : offsets[8]].tolist() == tok.encode(texts[7].encode())
        peaks.append(peak - output)
        # No UTF-8 copy is left attached to the texts either.
        assert [sys.getsizeof(t) for t in texts[:50]] == sizes
    assert peaks[0] < size // 10, peaks
    if READS_STR_IN_PLACE:
        assert max(peaks[1:3]) < size // 10, peaks
    assert peaks[3] > size // 5, peaks


@pytest.mark.parametrize("num_threads", [1, 2, 3])
def test_texts_of_every_width_encode_as_their_utf8(vocab: Vocab, num_threads: int) -> None:
    """CPython keeps a str as one, two or four bytes per character (Latin-1, UCS-2, UCS-4) by its
    widest character; each width, ASCII, str subclasses and bytes, mixed in one batch worth every
    thread, give the ids of their UTF-8 in every batch form and one by one."""
    rng = random.Random(7)
    alphabets = [
        "abc xyz 123.,\n",
        "\u00e9\u00e8\u00fc\u00df\u00ff\u00a0\u00b5",
        "\u0100\u0416\u05d0\u0628\u07ff",
        "\u0800\u3042\u30ab\u4e2d\u6587\uac00\ufffd\uffff\u3000",
        "\U00010000\U0001f600\U0001f680\U0010ffff",
    ]
    texts: list[str | bytes] = []
    for i in range(300):
        chosen = rng.sample(alphabets, rng.randint(1, len(alphabets)))
        text = "".join(rng.choice(rng.choice(chosen)) for _ in range(rng.choice([0, 1, 5, 40, 1500])))
        texts.append([text, text, text, Text(text), text.encode()][i % 5])
    assert sum(len(t) for t in texts) > 80_000  # worth every thread
    tok = vocab.tok
    expected = [tok.encode(t.encode() if isinstance(t, str) else t) for t in texts]
    assert expected == vocab.sp.encode([t if isinstance(t, str) else t.decode() for t in texts])
    assert tok.encode_batch(texts, num_threads=num_threads) == expected
    assert tok.count_batch(texts, num_threads=num_threads).tolist() == list(map(len, expected))
    ids, offsets = tok.encode_batch_to_numpy(texts, num_threads=num_threads)
    assert [ids[a:b].tolist() for a, b in itertools.pairwise(offsets)] == expected
    for text, ids_ in zip(texts[:60], expected[:60], strict=True):
        assert tok.encode(text) == ids_
        assert tok.count(text) == len(ids_)
        assert tok.encode_to_numpy(text).tolist() == ids_
        assert tok.encode_as_pieces(text) == [tok.id_to_piece(i) for i in ids_]


@given(
    texts=st.lists(st.text(st.characters(exclude_categories=("Cs",)), max_size=200), min_size=1, max_size=30),
    num_threads=st.sampled_from([1, 2, 3]),
)
def test_any_text_encodes_as_its_utf8_in_every_batch_form(
    mixtral: Vocab, texts: list[str], num_threads: int
) -> None:
    """Arbitrary text of every plane (each str read in place, its UTF-8 made by whichever thread
    encodes it) gives the ids of its UTF-8 bytes (which CPython makes, and the encoder checks),
    in batches large enough for every thread and in small ones."""
    batch = [t * (1 + 1500 // (len(t) + 1)) for t in texts] * 3
    tok = mixtral.tok
    expected = [tok.encode(t.encode()) for t in batch]
    assert tok.encode_batch(batch, num_threads=num_threads) == expected
    ids, offsets = tok.encode_batch_to_numpy(batch, num_threads=num_threads)
    assert [ids[a:b].tolist() for a, b in itertools.pairwise(offsets)] == expected
    assert tok.count_batch(batch, num_threads=num_threads).tolist() == list(map(len, expected))
    assert tok.encode(batch[0]) == expected[0]


def test_decode_accepts_numpy(vocab: Vocab) -> None:
    ids = vocab.tok.encode_to_numpy(TEXTS[7])
    assert vocab.tok.decode(ids) == vocab.sp.decode(ids.tolist())
    assert vocab.tok.decode(ids.astype(np.int64)) == vocab.sp.decode(ids.tolist())


# ---- batches --------------------------------------------------------------------------------------------


def test_encode_batch_order_and_threads(vocab: Vocab) -> None:
    texts = synthetic_batch(vocab, 3_000_000)
    assert sum(len(t.encode()) for t in texts) >= 3_000_000
    expected = vocab.sp.encode(texts)
    for num_threads in (1, 2, None, 7):
        got = vocab.tok.encode_batch(texts, num_threads=num_threads)
        assert len(got) == len(texts)
        bad = [i for i, (e, g) in enumerate(zip(expected, got, strict=True)) if e != g]
        assert not bad, f"num_threads={num_threads}: documents {bad[:10]} differ\n" + describe_mismatch(
            vocab.sp, expected[bad[0]], got[bad[0]]
        )
    # Any iterable, not only a list; a generator is consumed once.
    assert vocab.tok.encode_batch(t for t in texts[:50]) == expected[:50]
    assert vocab.tok.encode_batch(tuple(texts[:50]), num_threads=2) == expected[:50]
    assert vocab.tok.decode_batch(expected[:200], num_threads=2) == [
        vocab.sp.decode(i) for i in expected[:200]
    ]


@pytest.mark.parametrize("num_threads", [1, 2])
def test_a_batch_leaves_the_garbage_collector_as_it_found_it(mixtral: Vocab, num_threads: int) -> None:
    # The batch calls hold CPython's cyclic collector off while they make their result lists
    # (rust/bpetok-python/src/collector.rs). It must be on after every call that found it on (one
    # that fails too), still off after one that found it off, and the lists must be tracked as any
    # list is, so that a cycle a caller makes through one is collected.
    tok = mixtral.tok
    texts = [f"line {i} of a batch, caf\u00e9" for i in range(3000)]  # past a collection's threshold
    chat = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    calls = {
        "encode_batch": lambda: tok.encode_batch(texts, num_threads=num_threads),
        "encode_chat_batch": lambda: tok.encode_chat_batch([chat] * 800, num_threads=num_threads),
        "a failing encode_batch": lambda: tok.encode_batch([*texts[:1500], 3], num_threads=num_threads),
    }
    was_on = gc.isenabled()
    try:
        for name, call in calls.items():
            for on in (True, False):
                gc.enable() if on else gc.disable()
                try:
                    call()
                except TypeError:
                    assert name == "a failing encode_batch"
                assert gc.isenabled() == on, (name, on)
    finally:
        gc.enable() if was_on else gc.disable()
    lists = tok.encode_batch(texts, num_threads=num_threads)
    assert lists == [mixtral.sp.encode(t) for t in texts]
    assert all(gc.is_tracked(ids) for ids in lists)
    assert gc.is_tracked(lists)


# ---- bad inputs -----------------------------------------------------------------------------------------

# The last is long enough (over 2**20 characters) to be read through CPython's UTF-8 cache, not copied.
# A surrogate pair in a str is two lone surrogates (two code points, not one character). A str
# with a surrogate is kept two bytes per character, or four with an emoji beside it.
SURROGATE_TEXTS = [
    "\ud800",
    "abc\udfffdef",
    "ok \udc80",
    "pair \ud83d\ude00",
    "\U0001f600 wide \udbff",
    "caf\u00e9 \udc00",
    "long " * 250_000 + "\ud800",
]


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda tok, text: tok.encode(text), id="encode"),
        pytest.param(lambda tok, text: tok.encode_as_pieces(text), id="encode_as_pieces"),
        pytest.param(lambda tok, text: tok.encode_to_numpy(text), id="encode_to_numpy"),
        pytest.param(lambda tok, text: tok.encode_batch(["fine", text]), id="encode_batch"),
        pytest.param(lambda tok, text: tok.encode_batch_to_numpy(["fine", text]), id="encode_batch_to_numpy"),
    ],
)
def test_lone_surrogate_raises_unicode_encode_error(
    vocab: Vocab, call: Callable[[bpetok.Tokenizer, str], object]
) -> None:
    for text in SURROGATE_TEXTS:
        with pytest.raises(UnicodeEncodeError, match="surrogate") as info:
            call(vocab.tok, text)
        assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("num_threads", [2, 5])
def test_lone_surrogate_in_a_batch_read_while_encoding(vocab: Vocab, num_threads: int) -> None:
    """A batch worth several threads is encoded (or counted) while it is still being read to UTF-8: a text
    with no UTF-8 form in its middle still raises, whatever the other threads have done by then,
    and the same batch without it gives sentencepiece's ids."""
    texts = [f"{i} " + TEXTS[i % len(TEXTS)] * 50 for i in range(60)]
    assert sum(map(len, texts)) > 200_000  # enough for every thread
    bad = [*texts[:30], "abc\ud800", *texts[30:]]
    for call in (vocab.tok.encode_batch, vocab.tok.encode_batch_to_numpy, vocab.tok.count_batch):
        with pytest.raises(UnicodeEncodeError, match="surrogate"):
            call(bad, num_threads=num_threads)
    expected = vocab.sp.encode(texts)
    assert vocab.tok.encode_batch(texts, num_threads=num_threads) == expected
    assert vocab.tok.count_batch(texts, num_threads=num_threads).tolist() == list(map(len, expected))
    ids, offsets = vocab.tok.encode_batch_to_numpy(texts, num_threads=num_threads)
    assert [ids[a:b].tolist() for a, b in itertools.pairwise(offsets)] == expected


@pytest.mark.parametrize("num_threads", [1, 2, 3])
def test_a_batch_with_several_bad_texts_raises_for_the_first_in_the_list(
    vocab: Vocab, num_threads: int
) -> None:
    """The threads of a batch take texts from their own stretch of the list, so its texts are
    read to UTF-8 in that order rather than the list's; the error is still the first bad text's
    in list order: here text 10's (a lone surrogate at position 3) rather than text 45's (one at
    position 0), which is read first on three threads."""
    texts = [f"{i} " + TEXTS[i % len(TEXTS)] * 50 for i in range(60)]
    assert sum(map(len, texts)) > 200_000  # worth every thread
    texts[10] = "abc\ud800"
    texts[45] = "\ud800xyz"
    for call in (vocab.tok.encode_batch, vocab.tok.encode_batch_to_numpy, vocab.tok.count_batch):
        with pytest.raises(UnicodeEncodeError, match="position 3"):
            call(texts, num_threads=num_threads)
    texts[10] = "fine again"
    for call in (vocab.tok.encode_batch, vocab.tok.encode_batch_to_numpy, vocab.tok.count_batch):
        with pytest.raises(UnicodeEncodeError, match="position 0"):
            call(texts, num_threads=num_threads)


@pytest.mark.parametrize("call", ["encode_batch", "encode_batch_to_numpy", "count_batch"])
def test_a_batch_whose_list_grows_while_it_is_sized_gives_every_text_its_ids(call: str) -> None:
    """A batch worth two threads asks each text's length first (the threads take long texts
    first); a `str` subclass's `__len__` can run code that changes the list then. Whatever the
    list holds when it is read is encoded, each text at its place, none left out."""
    tok = bpetok.Tokenizer.default()
    texts: list[str] = [f"{i} " + "word and more words " * 3_000 for i in range(6)]
    texts.append("a long one " * 40_000)

    class Growing(str):
        def __len__(self) -> int:
            if len(texts) == 7:
                texts.append("added at the end " * 200)
            return super().__len__()

    texts[1] = Growing(texts[1])
    got = getattr(tok, call)(texts, num_threads=2)
    assert len(texts) == 8
    want = [tok.encode(str(text)) for text in texts]
    if call == "encode_batch":
        assert got == want
    elif call == "count_batch":
        assert got.tolist() == [len(ids) for ids in want]
    else:
        ids, offsets = got
        assert len(offsets) == len(texts) + 1
        assert [ids[offsets[i] : offsets[i + 1]].tolist() for i in range(len(texts))] == want


def test_module_encode_lone_surrogate_raises_unicode_encode_error() -> None:
    for text in SURROGATE_TEXTS:
        with pytest.raises(UnicodeEncodeError, match="surrogate"):
            bpetok.encode(text)


def test_id_beyond_64_bits_raises_index_error(vocab: Vocab) -> None:
    huge = 2**70
    with pytest.raises(IndexError, match=str(huge)):
        vocab.tok.decode([5, huge])
    with pytest.raises(IndexError, match=str(huge)):
        vocab.tok.decode_batch([[5], [huge]])
    with pytest.raises(IndexError, match=str(huge)):
        vocab.tok.id_to_piece(huge)


def test_out_of_range_message_names_the_valid_ids(vocab: Vocab) -> None:
    with pytest.raises(IndexError, match=f"ids 0 to {vocab.size - 1}"):
        vocab.tok.decode([vocab.size])


@pytest.mark.parametrize("bad_id", ["vocab_size", -1, 2**40])
def test_decode_out_of_range_id_raises_index_error(vocab: Vocab, bad_id: int | str) -> None:
    id_ = vocab.size if bad_id == "vocab_size" else bad_id
    assert isinstance(id_, int)
    for ids in ([id_], [5, 6, id_], np.array([5, id_], dtype=np.int64)):
        with pytest.raises(IndexError, match=str(id_)):
            vocab.tok.decode(ids)
    with pytest.raises(IndexError, match=str(id_)):
        vocab.tok.decode_batch([[5], [id_]])
    with pytest.raises(IndexError, match=str(id_)):
        vocab.tok.id_to_piece(id_)
    if vocab.name == "mixtral-8x7b":
        with pytest.raises(IndexError, match=str(id_)):
            bpetok.decode([id_])


@pytest.mark.parametrize(
    "bad", [None, 5, 3.0, ["a"], object(), bytearray(b"ab")], ids=lambda v: type(v).__name__
)
def test_encode_rejects_non_text(vocab: Vocab, bad: object) -> None:
    with pytest.raises(TypeError):
        vocab.tok.encode(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        vocab.tok.encode_as_pieces(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        vocab.tok.encode_to_numpy(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        vocab.tok.encode_batch(["ok", bad])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        bpetok.encode(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("bad", [None, 5, bytearray(b"ab"), ["a"]], ids=lambda v: type(v).__name__)
def test_a_batch_names_its_first_item_that_is_not_text(vocab: Vocab, bad: object, num_threads: int) -> None:
    """The batch calls check their items as the native module reads them (no Python loop in front
    of the threads): the first item in the list that is neither str nor bytes is named, on one
    thread and on two (where items are read in the order the threads take them), for a list or
    any other iterable; nothing is returned."""
    texts = [f"document {i}: " + "some words of text " * 80 for i in range(120)]  # 120 x 1.5 KB
    calls = [vocab.tok.encode_batch, vocab.tok.encode_batch_to_numpy, vocab.tok.count_batch]
    for where in (0, 7, 61, 119):
        batch: list[object] = list(texts)
        batch[where] = bad
        if where < 100:
            batch[100] = 3.5  # a later bad item of another type is not the one named
        want = rf"^texts\[{where}\] is {type(bad).__name__}, expected str or bytes$"
        for call in calls:
            with pytest.raises(TypeError, match=want):
                call(batch, num_threads=num_threads)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match=want):
                call(iter(batch), num_threads=num_threads)  # type: ignore[arg-type]

    # str and bytes subclasses are texts.
    class Str(str):
        pass

    class Bytes(bytes):
        pass

    mixed = [Str("a str subclass"), Bytes(b"a bytes subclass"), *texts[:3]]
    assert vocab.tok.encode_batch(mixed, num_threads=num_threads) == [vocab.tok.encode(t) for t in mixed]


def test_encode_batch_rejects_a_single_text(vocab: Vocab) -> None:
    with pytest.raises(TypeError):
        vocab.tok.encode_batch("abc")
    with pytest.raises(TypeError):
        vocab.tok.encode_batch(b"abc")
    with pytest.raises(TypeError):
        vocab.tok.decode("abc")  # type: ignore[arg-type]


@pytest.mark.parametrize("num_threads", [0, -1])
def test_bad_num_threads_raises_value_error(vocab: Vocab, num_threads: int) -> None:
    with pytest.raises(ValueError, match="num_threads"):
        vocab.tok.encode_batch(["a"], num_threads=num_threads)
    with pytest.raises(ValueError, match="num_threads"):
        vocab.tok.encode_batch_to_numpy(["a"], num_threads=num_threads)
    with pytest.raises(ValueError, match="num_threads"):
        vocab.tok.decode_batch([[5]], num_threads=num_threads)


def _more_than_65536_pieces(m: Any) -> None:
    """Appends NORMAL pieces of lowercase letters (with and without the leading ``▁``) below every
    score until the vocabulary has 70,000 pieces; most are reachable by merges."""
    have = {p.piece for p in m.pieces}
    low = min(p.score for p in m.pieces)
    letters = "etaoinshrdlucmfwypvbgkqjxz"
    words = ("".join(w) for n in (3, 4) for w in itertools.product(letters, repeat=n))
    for word in words:
        for piece in ("\u2581" + word, word):
            if len(m.pieces) >= 70_000:
                return
            if piece not in have:
                low -= 1.0
                m.pieces.add(piece=piece, score=low, type=1)


def test_a_vocabulary_over_65536_pieces_gives_its_ids_as_uint32_in_every_batch_form(mixtral: Vocab) -> None:
    """Past 65,536 pieces ids are uint32: into numpy (each text's ids packed by the thread that
    encoded it, then copied), on one thread and two, equal to sentencepiece's, ids above 65,535
    included."""
    data = modified_model(mixtral.path, _more_than_65536_pieces)
    tok = bpetok.Tokenizer.from_bytes(data)
    sp = spm.SentencePieceProcessor(model_proto=data)
    assert tok.vocab_size() == sp.get_piece_size() == 70_000
    assert tok.dtype == np.uint32
    rng = random.Random(11)
    texts = [
        " ".join("".join(rng.choice("etaoinshrdlu") for _ in range(rng.randrange(2, 9))) for _ in range(n))
        for n in [rng.randrange(1, 4000) for _ in range(40)]
    ]
    expected = sp.encode(texts)
    assert max(max(ids) for ids in expected) > 65_535
    for threads in (1, 2):
        flat, offsets = tok.encode_batch_to_numpy(texts, num_threads=threads)
        assert flat.dtype == np.uint32
        assert [flat[a:b].tolist() for a, b in itertools.pairwise(offsets)] == expected
        assert tok.encode_batch(texts, num_threads=threads) == expected


# ---- bad models -----------------------------------------------------------------------------------------


def modified_model(path: Path, change: Callable[[Any], None]) -> bytes:
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(path.read_bytes())
    change(proto)
    return proto.SerializeToString()


def _unigram(m: Any) -> None:
    m.trainer_spec.model_type = 1


def _no_byte_fallback(m: Any) -> None:
    m.trainer_spec.byte_fallback = False


def _duplicate_piece(m: Any) -> None:
    m.pieces[500].piece = m.pieces[400].piece  # the same piece text under two ids


def bad_models(model: Path) -> dict[str, tuple[bytes, tuple[str, ...]]]:
    """Bad model files and the words one of which the error message must contain (lower case)."""
    real = model.read_bytes()
    parse_words = ("protobuf", "parse", "not a sentencepiece model", "truncated", "empty", "no pieces")
    duplicate = sentencepiece_model_pb2.ModelProto()
    duplicate.ParseFromString(real)
    dup_piece = duplicate.pieces[400].piece
    return {
        "garbage": (bytes(random.Random(3).randrange(256) for _ in range(4000)), parse_words),
        "text": (b"this is not a sentencepiece model\n" * 20, parse_words),
        "empty": (b"", parse_words),
        "truncated": (real[:1000], parse_words),
        "unigram": (modified_model(model, _unigram), ("unigram",)),
        "no-byte-fallback": (modified_model(model, _no_byte_fallback), ("byte_fallback", "byte fallback")),
        "duplicate-piece": (modified_model(model, _duplicate_piece), (dup_piece,)),
    }


BAD_MODEL_NAMES = ["garbage", "text", "empty", "truncated", "unigram", "no-byte-fallback", "duplicate-piece"]


@pytest.mark.parametrize("name", BAD_MODEL_NAMES)
def test_bad_model_raises_model_error(mixtral: Vocab, tmp_path: Path, name: str) -> None:
    data, words = bad_models(mixtral.path)[name]
    path = tmp_path / f"{name}.model"
    path.write_bytes(data)
    with pytest.raises(bpetok.ModelError) as info:
        bpetok.Tokenizer.from_file(path)
    message = str(info.value).lower()
    assert isinstance(info.value, ValueError)
    assert any(w.lower() in message for w in words), f"{name}: message {message!r} names none of {words}"
    assert str(path).lower() in message, "the message names the file"
    if name == "duplicate-piece":
        assert "twice" in message or "duplicate" in message
    with pytest.raises(bpetok.ModelError):
        bpetok.Tokenizer.from_bytes(data)


def test_missing_model_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        bpetok.Tokenizer.from_file(tmp_path / "no-such.model")
    with pytest.raises(FileNotFoundError):
        bpetok.Tokenizer.from_file(str(tmp_path / "no-such.model"))


def test_bad_models_do_not_crash_the_interpreter(mixtral: Vocab, tmp_path: Path) -> None:
    """The same bad models in a child interpreter: an abort or a segfault shows up as its exit status."""
    for name, (data, _) in bad_models(mixtral.path).items():
        (tmp_path / f"{name}.model").write_bytes(data)
    script = textwrap.dedent(
        """
        import sys, pathlib, bpetok
        for path in sorted(pathlib.Path(sys.argv[1]).glob("*.model")):
            try:
                bpetok.Tokenizer.from_file(path)
            except bpetok.ModelError:
                pass
            else:
                print("loaded", path)
        print("done")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"exit status {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip() == "done", result.stdout


# Models bpetok may either refuse or must encode exactly as sentencepiece does: never load and differ.
def _no_dummy_prefix(m: Any) -> None:
    m.normalizer_spec.add_dummy_prefix = False


def _remove_extra_whitespaces(m: Any) -> None:
    m.normalizer_spec.remove_extra_whitespaces = True


def _unused_pieces(m: Any) -> None:
    ids = {p.piece: i for i, p in enumerate(m.pieces)}
    for piece in [
        "\u2581the",
        "er",
        "in",
        "\u2581t",
        "on",
        "\u2581\u2581",
        "\u2581\u2581\u2581\u2581",
        "\u2581a",
    ]:
        m.pieces[ids[piece]].type = 5  # UNUSED: merged into, then split back (rule 9)


def _escape_whitespaces_off(m: Any) -> None:
    m.normalizer_spec.escape_whitespaces = False


def _whitespace_suffix(m: Any) -> None:
    m.trainer_spec.treat_whitespace_as_suffix = True


VARIANTS = {
    "no-dummy-prefix": _no_dummy_prefix,
    "remove-extra-whitespaces": _remove_extra_whitespaces,
    "unused-pieces": _unused_pieces,
    "escape-whitespaces-off": _escape_whitespaces_off,
    "whitespace-suffix": _whitespace_suffix,
}
VARIANT_TEXTS = [
    *TEXTS,
    "then the other one in there, on and on",
    "    a   b  ",
    "\u2581the\u2581",
]


_VARIANT_CACHE: dict[str, tuple[spm.SentencePieceProcessor, bpetok.Tokenizer | None]] = {}


def variant_models(path: Path, variant: str) -> tuple[spm.SentencePieceProcessor, bpetok.Tokenizer | None]:
    """The variant model as sentencepiece and as bpetok (None if bpetok refuses it), loaded once."""
    if variant not in _VARIANT_CACHE:
        data = modified_model(path, VARIANTS[variant])
        try:
            tok: bpetok.Tokenizer | None = bpetok.Tokenizer.from_bytes(data)
        except bpetok.ModelError:
            tok = None  # refusing a model it does not implement is fine
        _VARIANT_CACHE[variant] = (spm.SentencePieceProcessor(model_proto=data), tok)
    return _VARIANT_CACHE[variant]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_model_refused_or_exact(mixtral: Vocab, variant: str) -> None:
    sp, tok = variant_models(mixtral.path, variant)
    if tok is None:
        return
    for text in VARIANT_TEXTS:
        assert_same(sp, text, tok.encode(text))
        assert tok.decode(sp.encode(text)) == sp.decode(sp.encode(text))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@given(text=st.text(alphabet=st.sampled_from(list(" \u2581\u3000\tthe in on er a 1\u4e2d\U0001f600"))))
def test_variant_model_refused_or_exact_property(mixtral: Vocab, variant: str, text: str) -> None:
    sp, tok = variant_models(mixtral.path, variant)
    if tok is not None:
        assert_same(sp, text, tok.encode(text))


# ---- pathological inputs --------------------------------------------------------------------------------


def _no_spaces_200k() -> str:
    rng = random.Random(11)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789.,;:-_()\u00e9\u00fc\u4e2d\u6587\U0001f600"
    return "".join(rng.choice(alphabet) for _ in range(200_000))


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: "a" * 200_000, id="a*200000"),
        pytest.param(lambda: " " * 200_000, id="space*200000"),
        pytest.param(lambda: "\u2581" * 70_000, id="U+2581*70000"),
        pytest.param(_no_spaces_200k, id="200k-no-spaces"),
        pytest.param(lambda: "ab" * 100_000, id="ab*100000"),
        pytest.param(lambda: "\u4e2d" * 70_000, id="cjk*70000"),
    ],
)
def test_pathological_inputs(vocab: Vocab, make: Callable[[], str]) -> None:
    text = make()
    assert_same(vocab.sp, text, vocab.tok.encode(text))


def _long_mixed_text(seed: int, size: int) -> str:
    parts = [
        "The quick brown fox ",
        "jumps",
        " over\n\n",
        "    code(x) ",
        "数据获取一个",
        "中文文本。",
        "日本語の",
        "😀",
        "   ",
        "é ",
    ]
    rng = random.Random(seed)
    out: list[str] = []
    n = 0
    while n < size:
        part = rng.choice(parts)
        out.append(part)
        n += len(part.encode())
    return "".join(out)


def test_one_long_text_on_two_threads_matches_sentencepiece(vocab: Vocab) -> None:
    """A text over 1 MiB given to ``encode_batch`` alone is cut into parts encoded on every thread;
    the ids are sentencepiece's, as with one thread."""
    text = _long_mixed_text(7, 2_500_000)
    expected = vocab.sp.encode(text)
    assert vocab.tok.encode_batch([text], num_threads=2) == [expected]
    assert vocab.tok.encode_batch([text, "x"], num_threads=4)[0] == expected
    ids, offsets = vocab.tok.encode_batch_to_numpy([text], num_threads=2)
    assert ids.tolist() == expected and offsets.tolist() == [0, len(expected)]
