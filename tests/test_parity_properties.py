"""Property-based parity with sentencepiece on both reference vocabularies.

Every test draws inputs with Hypothesis and asks the same question of ``sentencepiece`` and of bpetok:
the ids (or pieces, or text) must be identical. The strategies aim at the places where an exact
reimplementation can slip: the dummy prefix and space runs, characters missing from the vocabulary
(byte fallback), invalid UTF-8, text that looks like control / byte / user-defined pieces, and byte
runs in decoding that do not form valid UTF-8.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from conftest import Vocab
from hypothesis import example, given
from hypothesis import strategies as st
from mismatch import describe_mismatch

SPACE_PIECE = "\u2581"

# Any Unicode text sentencepiece can take: everything but lone surrogates (category Cs).
CHARS = st.characters(exclude_categories=("Cs",))
TEXT = st.text(alphabet=CHARS)

# Whitespace of every kind mixed with a few letters, digits and CJK: space runs, the dummy prefix and
# the -1e9-scored whitespace pieces are where the merge order is most delicate.
WHITESPACE_HEAVY = st.text(
    alphabet=st.sampled_from(
        [
            " ",
            " ",
            " ",
            "\t",
            "\n",
            "\r",
            "\u00a0",
            "\u3000",
            SPACE_PIECE,
            "\x00",
            "a",
            "b",
            "Z",
            "1",
            "\u3042",
            ".",
        ]
    ),
    max_size=200,
)
SPACE_RUNS = st.lists(
    st.tuples(st.integers(0, 40), st.sampled_from(["", "a", "x", "\n", "\t", "\u3042", "7", "\u2581", "ab"])),
    max_size=12,
).map(lambda runs: "".join(" " * n + s for n, s in runs))

# Text that is mostly ASCII words, with some of everything else.
MIXED_TEXT = st.lists(
    st.one_of(
        st.from_regex(r"[ A-Za-z0-9.,;:!?'\"()\[\]{}<>/_-]{1,20}", fullmatch=True),
        WHITESPACE_HEAVY,
        TEXT,
    ),
    max_size=8,
).map("".join)

# Bytes: random ones, and valid UTF-8 with the invalid forms a strict decoder must reject spliced in.
INVALID_UTF8 = [
    b"\x80",  # lone continuation byte
    b"\xbf\xbf",
    b"\xc0\x80",  # overlong NUL
    b"\xc1\xbf",  # overlong
    b"\xe0\x80\xaf",  # overlong '/'
    b"\xed\xa0\x80",  # UTF-8 encoded surrogate U+D800
    b"\xed\xbf\xbf",  # U+DFFF
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xf5\x80\x80\x80",
    b"\xff",
    b"\xfe",
    b"\xe3\x81",  # truncated 3-byte sequence
    b"\xf0\x9f\x98",  # truncated 4-byte sequence
    b"\xc3",  # truncated 2-byte sequence
]
BINARY = st.one_of(
    st.binary(),
    st.lists(
        st.one_of(
            st.sampled_from(INVALID_UTF8),
            TEXT.map(lambda s: s.encode("utf-8")),
            st.binary(max_size=4),
            st.sampled_from([b" ", b"  ", b"a", b"\xe2\x96\x81"]),
        ),
        max_size=12,
    ).map(b"".join),
)

# Cases the rules file (../shared/sentencepiece-bpe-rules.md) singles out, and a few more classics.
RULE_EXAMPLES = [
    " ",  # encodes to the single piece ▁▁
    "a ",  # ends with a lone ▁
    "",  # no tokens at all, no dummy prefix
    SPACE_PIECE,  # a literal U+2581 is read as a space
    SPACE_PIECE * 3 + "a" + SPACE_PIECE,
    "<s>",  # typed control piece text is ordinary text
    "</s> <unk> <0x41>",
    "[INST] hello [/INST]",
    "[REFERENCE_DOC_1]0 [REFERENCE_DOC_19][REFERENCE_DOC_1",
    " " * 17,
    " " * 1000,
    "a" + " " * 33 + "b" + " " * 16,
    "\t \n \u00a0 \u3000 ",
    "日本語のテキスト 123 4567",
    "\U0001f600\U0001f9d1\u200d\U0001f91d\u200d\U0001f9d1",  # emoji: byte fallback
    "\x00\x01\x7f",
]


def assert_same_ids(vocab: Vocab, text: str | bytes, *, add_bos: bool = False, add_eos: bool = False) -> None:
    expected = vocab.sp.encode(text, add_bos=add_bos, add_eos=add_eos)
    got = vocab.tok.encode(text, add_bos=add_bos, add_eos=add_eos)
    assert got == expected, f"{vocab.name}: encode({text!r}) differs\n" + describe_mismatch(
        vocab.sp, expected, got
    )


def byte_piece_id(vocab: Vocab, byte: int) -> int:
    return vocab.sp.piece_to_id(f"<0x{byte:02X}>")


def piece_ids(vocab: Vocab) -> st.SearchStrategy[int]:
    """Any id, with the byte, control, unknown and user-defined pieces drawn far more often."""
    branches = [
        st.integers(0, vocab.size - 1),
        st.integers(0, vocab.size - 1),
        st.sampled_from(vocab.byte_ids),
        st.sampled_from(vocab.control_ids),
        st.just(vocab.unk_id),
    ]
    if vocab.user_defined_ids:
        branches.append(st.sampled_from(vocab.user_defined_ids))
    return st.one_of(branches)


def text_from_pieces(vocab: Vocab) -> st.SearchStrategy[str]:
    """Text made by gluing piece strings together, with ▁ turned into a space or left as it is."""
    piece = st.tuples(piece_ids(vocab), st.booleans()).map(
        lambda p: vocab.sp.id_to_piece(p[0]).replace(SPACE_PIECE, " ") if p[1] else vocab.sp.id_to_piece(p[0])
    )
    separator = st.sampled_from(["", "", "", "", " ", "  ", "\n", "\t", SPACE_PIECE])
    return st.lists(st.tuples(piece, separator), max_size=30).map(lambda xs: "".join(p + s for p, s in xs))


def decode_ids(vocab: Vocab) -> st.SearchStrategy[list[int]]:
    """Id lists for decoding, heavy on byte pieces (valid and invalid UTF-8 runs) and specials."""
    space_ids = [vocab.sp.piece_to_id(SPACE_PIECE * n) for n in (1, 2, 3, 16)]
    utf8_bytes = CHARS.map(lambda c: [byte_piece_id(vocab, b) for b in c.encode("utf-8")])
    invalid_bytes = st.sampled_from(INVALID_UTF8).map(lambda bs: [byte_piece_id(vocab, b) for b in bs])
    # A valid character cut short: a truncated sequence inside a byte run.
    cut_bytes = st.tuples(utf8_bytes, st.integers(0, 3)).map(lambda t: t[0][: t[1]])
    single = st.one_of(piece_ids(vocab), st.sampled_from(space_ids)).map(lambda i: [i])
    chunks = st.lists(st.one_of(single, single, utf8_bytes, invalid_bytes, cut_bytes), max_size=25)
    return chunks.map(lambda cs: [i for c in cs for i in c])


# ---- encode: ids --------------------------------------------------------------------------------------


@given(text=TEXT)
@example(text=" ")
@example(text="a ")
@example(text="")
@example(text=SPACE_PIECE)
@example(text="<s>")
@example(text=" " * 1000)
@example(text="  a   b    c     " * 10)
def test_encode_arbitrary_text(vocab: Vocab, text: str) -> None:
    assert_same_ids(vocab, text)


@given(text=MIXED_TEXT)
def test_encode_mixed_text(vocab: Vocab, text: str) -> None:
    assert_same_ids(vocab, text)


@given(text=st.one_of(WHITESPACE_HEAVY, SPACE_RUNS))
@example(text="\u00a0 \u00a0  \u3000\u3000 " + SPACE_PIECE + " " + SPACE_PIECE)
@example(text="\n" * 30 + " " * 30 + "\t" * 30)
def test_encode_whitespace_heavy(vocab: Vocab, text: str) -> None:
    assert_same_ids(vocab, text)


@given(data=st.data())
def test_encode_text_made_of_pieces(vocab: Vocab, data: st.DataObject) -> None:
    text = data.draw(text_from_pieces(vocab), label="text")
    assert_same_ids(vocab, text)


@given(data=BINARY)
@example(data=b"")
@example(data=b"a\xed\xa0\x80b")
@example(data=b"\xc0\x80 \xf4\x90\x80\x80 \xe3\x81")
@example(data=b" " * 50 + b"\xff")
def test_encode_bytes(vocab: Vocab, data: bytes) -> None:
    assert_same_ids(vocab, data)


@pytest.mark.parametrize("text", RULE_EXAMPLES)
def test_encode_rule_examples(vocab: Vocab, text: str) -> None:
    assert_same_ids(vocab, text)
    assert_same_ids(vocab, text.encode("utf-8"))
    assert_same_ids(vocab, text, add_bos=True, add_eos=True)


def test_rules_file_consequences(vocab: Vocab) -> None:
    """The consequences listed in the rules file hold in sentencepiece, and in bpetok."""
    implementations: list[tuple[str, Callable[[str], list[str]]]] = [
        ("sentencepiece", lambda text: list(vocab.sp.encode(text, out_type=str))),
        ("bpetok", vocab.tok.encode_as_pieces),
    ]
    for name, pieces in implementations:
        assert pieces(" ") == [SPACE_PIECE * 2], name
        assert pieces("a ")[-1] == SPACE_PIECE, name
        assert pieces("") == [], name
        assert pieces(SPACE_PIECE) == pieces(" "), name
        assert "<s>" not in pieces("<s>"), name
    assert vocab.tok.decode(vocab.tok.encode(SPACE_PIECE)) == " "
    assert vocab.tok.encode("", add_bos=True, add_eos=True) == [vocab.sp.bos_id(), vocab.sp.eos_id()]


# ---- encode: flags, pieces ------------------------------------------------------------------------------


@given(text=st.one_of(st.just(""), TEXT, MIXED_TEXT, BINARY), add_bos=st.booleans(), add_eos=st.booleans())
@example(text="", add_bos=True, add_eos=True)
@example(text="", add_bos=True, add_eos=False)
@example(text="", add_bos=False, add_eos=True)
@example(text=b"", add_bos=True, add_eos=True)
def test_encode_bos_eos(vocab: Vocab, text: str | bytes, add_bos: bool, add_eos: bool) -> None:
    assert_same_ids(vocab, text, add_bos=add_bos, add_eos=add_eos)


@given(text=st.one_of(TEXT, MIXED_TEXT, WHITESPACE_HEAVY), add_bos=st.booleans(), add_eos=st.booleans())
@example(text="\U0001f600 a", add_bos=False, add_eos=False)
@example(text="", add_bos=True, add_eos=True)
def test_encode_as_pieces(vocab: Vocab, text: str, add_bos: bool, add_eos: bool) -> None:
    expected = vocab.sp.encode(text, out_type=str, add_bos=add_bos, add_eos=add_eos)
    assert vocab.tok.encode_as_pieces(text, add_bos=add_bos, add_eos=add_eos) == expected


@given(data=BINARY)
def test_encode_as_pieces_bytes(vocab: Vocab, data: bytes) -> None:
    assert vocab.tok.encode_as_pieces(data) == vocab.sp.encode(data, out_type=str)


# ---- decode ---------------------------------------------------------------------------------------------


def assert_same_decode(vocab: Vocab, ids: Sequence[int]) -> None:
    expected = vocab.sp.decode(list(ids))
    got = vocab.tok.decode(list(ids))
    assert got == expected, f"{vocab.name}: decode({list(ids)}) = {got!r}, sentencepiece gives {expected!r}"


@given(data=st.data())
def test_decode_arbitrary_ids(vocab: Vocab, data: st.DataObject) -> None:
    ids = data.draw(st.lists(st.integers(0, vocab.size - 1)), label="ids")
    assert_same_decode(vocab, ids)


@given(data=st.data())
def test_decode_byte_and_special_ids(vocab: Vocab, data: st.DataObject) -> None:
    ids = data.draw(decode_ids(vocab), label="ids")
    assert_same_decode(vocab, ids)


def test_decode_examples(vocab: Vocab) -> None:
    b = [byte_piece_id(vocab, x) for x in range(256)]
    sp = vocab.sp
    cases = [
        [],
        [vocab.unk_id],
        [sp.bos_id(), vocab.unk_id, sp.eos_id()],
        [b[0xE2], b[0x96], b[0x81]],  # bytes spelling U+2581 stay U+2581
        [b[0xE2], b[0x96], b[0x81], sp.piece_to_id("\u2581a")],
        [b[0xE3], b[0x81], sp.piece_to_id("\u2581a"), b[0x81]],  # byte run cut by a normal piece
        [b[0xED], b[0xA0], b[0x80]],  # encoded surrogate: three U+FFFD
        [b[0xC0], b[0x80], b[0xF4], b[0x90], b[0x80], b[0x80]],
        [sp.piece_to_id("\u2581"), sp.piece_to_id("\u2581"), sp.piece_to_id("\u2581a")],
        [b[0x41], sp.piece_to_id("\u2581a")],  # a byte piece first: the next ▁ is output
        [sp.bos_id(), sp.piece_to_id("\u2581a")],  # a control piece outputs nothing
        [vocab.unk_id, sp.piece_to_id("\u2581a")],
        *([[i, sp.piece_to_id("\u2581x")] for i in vocab.user_defined_ids[:3]]),
        *([[sp.piece_to_id("\u2581x"), i] for i in vocab.control_ids[:5]]),
    ]
    for ids in cases:
        assert_same_decode(vocab, ids)


# ---- batch ----------------------------------------------------------------------------------------------


@given(
    texts=st.lists(st.one_of(TEXT, MIXED_TEXT, WHITESPACE_HEAVY, BINARY), max_size=40),
    num_threads=st.sampled_from([None, 1, 2, 3, 8]),
    add_bos=st.booleans(),
    add_eos=st.booleans(),
)
@example(texts=[], num_threads=None, add_bos=False, add_eos=False)
@example(texts=["", b"", " "], num_threads=2, add_bos=True, add_eos=True)
def test_encode_batch(
    vocab: Vocab, texts: list[str | bytes], num_threads: int | None, add_bos: bool, add_eos: bool
) -> None:
    got = vocab.tok.encode_batch(texts, add_bos=add_bos, add_eos=add_eos, num_threads=num_threads)
    one_by_one = [vocab.tok.encode(t, add_bos=add_bos, add_eos=add_eos) for t in texts]
    assert got == one_by_one
    assert got == vocab.sp.encode(texts, add_bos=add_bos, add_eos=add_eos)


@given(data=st.data(), num_threads=st.sampled_from([None, 1, 2, 3]))
def test_decode_batch(vocab: Vocab, data: st.DataObject, num_threads: int | None) -> None:
    batch = data.draw(st.lists(decode_ids(vocab), max_size=20), label="batch")
    assert vocab.tok.decode_batch(batch, num_threads=num_threads) == [vocab.sp.decode(ids) for ids in batch]


# ---- round trip -----------------------------------------------------------------------------------------


@given(text=st.one_of(TEXT, MIXED_TEXT, WHITESPACE_HEAVY, BINARY))
@example(text=" ")
@example(text=SPACE_PIECE + "a")
@example(text=b"\xff\xfe abc")
def test_round_trip(vocab: Vocab, text: str | bytes) -> None:
    expected = vocab.sp.decode(vocab.sp.encode(text))
    assert vocab.tok.decode(vocab.tok.encode(text)) == expected
