"""Counting tokens (``count``, ``count_batch``, ``bpetok.count``) against the length of the
encoding, and decoding from every kind of id sequence (lists, tuples, numpy arrays of each integer
dtype) against ``sentencepiece``, on both reference vocabularies."""

from __future__ import annotations

import bpetok
import numpy as np
import pytest
from conftest import Vocab
from hypothesis import given
from hypothesis import strategies as st

TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)))
TEXTS = st.one_of(TEXT, st.binary(), st.from_regex(r"[ a-z\n]{0,40}", fullmatch=True))

# ---- count ----------------------------------------------------------------------------------------------


@given(text=TEXTS, add_bos=st.booleans(), add_eos=st.booleans())
def test_count_is_the_length_of_encode(vocab: Vocab, text: str | bytes, add_bos: bool, add_eos: bool) -> None:
    tok = vocab.tok
    expected = len(tok.encode(text, add_bos=add_bos, add_eos=add_eos))
    assert tok.count(text, add_bos=add_bos, add_eos=add_eos) == expected
    if isinstance(text, str):
        assert expected == len(vocab.sp.encode(text, add_bos=add_bos, add_eos=add_eos))


@given(
    texts=st.lists(TEXTS, max_size=30), add_bos=st.booleans(), num_threads=st.sampled_from([1, 2, 3, None])
)
def test_count_batch_is_the_lengths_of_encode_batch(
    vocab: Vocab, texts: list[str | bytes], add_bos: bool, num_threads: int | None
) -> None:
    counts = vocab.tok.count_batch(texts, add_bos=add_bos, num_threads=num_threads)
    assert counts.dtype == np.int64
    assert counts.shape == (len(texts),)
    assert counts.tolist() == [len(ids) for ids in vocab.tok.encode_batch(texts, add_bos=add_bos)]


def test_count_batch_on_many_threads_and_any_iterable(vocab: Vocab) -> None:
    texts = [f"document {i}: " + "words and \u65e5\u672c\u8a9e " * (i % 97) for i in range(3000)]
    expected = [len(ids) for ids in vocab.tok.encode_batch(texts, add_bos=True, add_eos=True)]
    for num_threads in (1, 2, 7, None):
        counts = vocab.tok.count_batch(texts, add_bos=True, add_eos=True, num_threads=num_threads)
        assert counts.tolist() == expected, num_threads
    first = [len(vocab.tok.encode(t)) for t in texts[:10]]
    assert vocab.tok.count_batch(t for t in texts[:10]).tolist() == first
    assert vocab.tok.count_batch(tuple(texts[:10])).tolist() == first
    empty = vocab.tok.count_batch([])
    assert empty.dtype == np.int64 and empty.shape == (0,)


def test_module_count_uses_the_embedded_vocabulary(mixtral: Vocab) -> None:
    assert bpetok.count("Hello world") == 2
    assert bpetok.count("Hello world", add_bos=True, add_eos=True) == 4
    assert bpetok.count("") == 0 and bpetok.count("", add_bos=True) == 1
    assert bpetok.count(b"raw \xff bytes") == len(mixtral.sp.encode("raw \ufffd bytes"))


def test_count_refuses_what_encode_refuses(vocab: Vocab) -> None:
    with pytest.raises(TypeError):
        vocab.tok.count(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        vocab.tok.count_batch(["ok", None])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        vocab.tok.count_batch("abc")
    with pytest.raises(UnicodeEncodeError, match="surrogate"):
        vocab.tok.count("a\ud800")
    with pytest.raises(UnicodeEncodeError, match="surrogate"):
        vocab.tok.count_batch(["fine", "\udfff"])
    with pytest.raises(ValueError, match="num_threads"):
        vocab.tok.count_batch(["a"], num_threads=0)


# ---- decode from lists, tuples and arrays ---------------------------------------------------------------


def id_lists(vocab: Vocab) -> st.SearchStrategy[list[int]]:
    special = st.sampled_from(vocab.special_ids)
    return st.lists(st.one_of(st.integers(0, vocab.size - 1), special), max_size=40)


@given(data=st.data())
def test_decode_of_every_sequence_type_is_sentencepiece(vocab: Vocab, data: st.DataObject) -> None:
    ids = data.draw(id_lists(vocab), label="ids")
    expected = vocab.sp.decode(ids)
    tok = vocab.tok
    assert tok.decode(ids) == expected
    assert tok.decode(tuple(ids)) == expected
    assert tok.decode(iter(ids)) == expected
    small = np.int16 if vocab.size <= 2**15 else np.int32
    for dtype in (np.uint16, np.uint32, np.int32, np.int64, np.uint64, small):
        assert tok.decode(np.array(ids, dtype=dtype)) == expected, dtype
    # A strided view is read as the ids it shows.
    doubled = np.repeat(np.array(ids, dtype=np.int64), 2)[::2]
    assert tok.decode(doubled) == expected


def test_decode_of_arrays_refuses_ids_out_of_range(vocab: Vocab) -> None:
    for dtype, bad in ((np.uint16, 65535), (np.uint32, vocab.size), (np.int64, -1), (np.int32, -5)):
        with pytest.raises(IndexError, match=str(bad)):
            vocab.tok.decode(np.array([5, bad, 6], dtype=dtype))
    with pytest.raises(IndexError, match=str(2**64 - 1)):
        vocab.tok.decode(np.array([5, 2**64 - 1], dtype=np.uint64))
    # A 2-d array is not a list of ids.
    with pytest.raises(TypeError):
        vocab.tok.decode(np.array([[5, 6]], dtype=np.int64))


def test_decode_of_long_documents_is_sentencepiece(vocab: Vocab) -> None:
    text = "The quick brown fox \u65e5\u672c\u8a9e \U0001f916 " * 3000
    ids = vocab.sp.encode(text)
    assert vocab.tok.decode(ids) == vocab.sp.decode(ids) == text
    assert vocab.tok.decode(np.array(ids, dtype=vocab.tok.dtype)) == text
    assert vocab.tok.decode_batch([ids, ids[:7], []], num_threads=2) == [text, vocab.sp.decode(ids[:7]), ""]


@pytest.mark.parametrize(
    "text",
    [
        # Mostly non-ASCII (decoded through UTF-16): a byte order mark first, emoji (surrogate
        # pairs in UTF-16), rare characters (byte pieces), NUL and other control characters.
        ("\ufeff\u65e5\u672c\u8a9e\u306e\u6587\u7ae0\u3067\u3059\u3002\U0001f916\u9f98\u9f98\x00\x01\u00e9")
        * 40,
        "\u0417\u0434\u0440\u0430\u0432\u0441\u0442\u0432\u0443\u0439\u0442\u0435 \u043c\u0438\u0440 " * 50,
        " \u4e2d\u6587 text \U0001f600\U0001f600 \u0939\u093f\u0928\u094d\u0926\u0940 " * 60,
        # Mostly ASCII with some non-ASCII (decoded through UTF-8).
        "plain text, mostly ASCII \u00e9\u00e8 " * 60,
    ],
)
def test_decode_of_text_through_either_unicode_form_is_sentencepiece(vocab: Vocab, text: str) -> None:
    ids = vocab.sp.encode(text)
    expected = vocab.sp.decode(ids)
    assert expected == text
    tok = vocab.tok
    assert tok.decode(ids) == expected
    assert tok.decode(np.array(ids, dtype=tok.dtype)) == expected
    assert tok.decode_batch([ids, ids[1:], ids[:20]], num_threads=2) == [
        expected,
        vocab.sp.decode(ids[1:]),
        vocab.sp.decode(ids[:20]),
    ]


def test_decode_batch_of_many_chunks_on_any_thread_count(vocab: Vocab) -> None:
    texts = [f"doc {i} \u65e5\u672c " + "the quick brown fox " * (i % 50 * 40) for i in range(400)]
    batch = vocab.tok.encode_batch(texts)
    assert sum(map(len, batch)) > 500_000  # many chunks
    for num_threads in (1, 2, 3, None):
        assert vocab.tok.decode_batch(batch, num_threads=num_threads) == texts, num_threads
    bad = [*batch[:-1], [*batch[-1], vocab.size]]
    for num_threads in (1, 2):
        with pytest.raises(IndexError, match=str(vocab.size)):
            vocab.tok.decode_batch(bad, num_threads=num_threads)


def test_decode_of_lists_that_are_not_all_plain_ints(vocab: Vocab) -> None:
    """Lists of plain ints take the fast path; anything else in the list (bool, numpy integers,
    objects with ``__index__``, even one that empties the list while it is read) the general one."""
    tok = vocab.tok
    hello = tok.encode("Hello world")
    expected = vocab.sp.decode(hello)

    class Index:
        def __init__(self, value: int, victim: list[object] | None = None) -> None:
            self.value, self.victim = value, victim

        def __index__(self) -> int:
            if self.victim is not None:
                self.victim.clear()
            return self.value

    assert tok.decode([*hello[:1], np.int64(hello[1]), *hello[2:]]) == expected
    assert tok.decode([Index(i) for i in hello]) == expected
    victim: list[object] = [hello[0]]
    victim += [Index(hello[1], victim), *hello[2:]]
    assert tok.decode(victim) == expected  # read as it was when the call began
    assert tok.decode([True, 5]) == vocab.sp.decode([1, 5])
    with pytest.raises(TypeError):
        tok.decode([5, "6"])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        tok.decode([5, 6.0])  # type: ignore[list-item]
    with pytest.raises(IndexError, match="-1"):
        tok.decode([5, -1])
    with pytest.raises(IndexError, match=str(2**63)):
        tok.decode([5, 2**63])


def test_decode_of_encode_lists_and_of_equal_fresh_ints_agree(vocab: Vocab) -> None:
    """The ints ``encode`` puts in its lists are the tokenizer's cached ones, read by their
    address; equal ints made elsewhere (and lists mixing both, or another tokenizer's cached ints)
    are read by value, with the same result and the same errors."""
    tok = vocab.tok
    text = "Hello \u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \U0001f916 world " * 50
    ids = tok.encode(text)
    fresh = [int(str(i)) for i in ids]  # equal values, other objects (above the small ints)
    assert any(a is not b for a, b in zip(ids, fresh, strict=True))
    theirs = bpetok.Tokenizer.from_file(vocab.path).encode(text)  # its own cached ints
    mixed = [a if k % 2 else b for k, (a, b) in enumerate(zip(ids, fresh, strict=True))]
    expected = vocab.sp.decode(ids)
    for case in (ids, fresh, mixed, theirs):
        assert tok.decode(case) == expected
    assert tok.decode_batch([ids, fresh, mixed]) == [expected] * 3
    for bad in (vocab.size, -1, 2**63):
        for case in (ids, fresh):
            with pytest.raises(IndexError, match=str(bad)):
                tok.decode([*case, bad])
