"""The Rust reader that ``bpetok pack`` uses for JSONL and text (``bpetok::input``, through
``_bpetok.read_documents``) against the Python reader (``bpetok.inputs.InputReader``) that
defines the rules: same documents, same sizes and hashes, same error messages, on generated
files full of edge cases (escapes, lone surrogates, NaN, blank lines of every whitespace,
invalid UTF-8, byte order marks, CRLF, compression)."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
from pathlib import Path

import bpetok
import pytest
import zstandard
from bpetok import _bpetok
from bpetok.cli import _runs_of_inputs
from bpetok.inputs import InputError, InputFile, InputReader, encodable_text, jsonl_line_document
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

COMPRESS = {
    "none": lambda b: b,
    "gzip": gzip.compress,
    "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
}
SUFFIX = {"none": "", "gzip": ".gz", "zstd": ".zst"}


def python_read(
    path: Path, kind: str, field: str, lines: bool, errors: str
) -> tuple[list[str], tuple[int, str, int]] | str:
    """Documents as ``bpetok pack`` got them from the Python reader (lone surrogates checked at
    encoding), and (size, sha256, documents); or the error message."""
    reader = InputReader([str(path)], field=field, lines=lines, errors=errors, input_format=kind)
    try:
        docs = [encodable_text(d.text, d.source, errors) for d in reader.documents()]
    except InputError as err:
        return str(err)
    file = reader.files[0]
    assert file.size is not None and file.sha256 is not None
    return docs, (file.size, file.sha256, file.documents)


def rust_read(
    path: Path,
    kind: str,
    compression: str,
    field: str,
    lines: bool,
    errors: str,
    *,
    python_fallback: bool = True,
) -> tuple[list[str], tuple[int, str, int]] | str:
    def fallback(name: str, lineno: int, text: str) -> str | None:
        return jsonl_line_document(name, lineno, text, field, errors)

    try:
        docs, summaries = _bpetok.read_documents(
            [(str(path), str(path), kind, compression)],
            field=field,
            lines=lines,
            errors=errors,
            fallback=fallback if python_fallback else None,
        )
    except (InputError, ValueError) as err:
        return str(err)
    size, sha256, documents, _ = summaries[0]
    return docs, (size, sha256, documents)


def check_same(tmp_path: Path, body: bytes, kind: str, field: str = "text", lines: bool = False) -> None:
    for compression in ("none", "gzip", "zstd"):
        ext = ".jsonl" if kind == "jsonl" else ".txt"
        path = tmp_path / f"in{ext}{SUFFIX[compression]}"
        raw = COMPRESS[compression](body)
        path.write_bytes(raw)
        for errors in ("strict", "replace"):
            want = python_read(path, kind, field, lines, errors)
            got = rust_read(path, kind, compression, field, lines, errors)
            assert got == want, (compression, errors, body[:200])
            if not isinstance(got, str):
                assert got[1][:2] == (len(raw), hashlib.sha256(raw).hexdigest())
            if kind == "jsonl" and b"NaN" not in body and b"Infinity" not in body:
                # Without Python's verdict on the lines serde_json rejects: the same documents,
                # and an error on the same line (in Rust's words).
                alone = rust_read(path, kind, compression, field, lines, errors, python_fallback=False)
                if isinstance(want, str):
                    assert isinstance(alone, str), (errors, body[:200])
                    assert alone.split(": ")[0] == want.split(": ")[0]
                else:
                    assert alone == want, (errors, body[:200])


TEXT = st.text(st.characters(codec="utf-8"), max_size=30) | st.sampled_from(
    ["", "a", "é", "日本", "😀", "\x00"]
)
ESCAPED = st.sampled_from(
    [
        r"\ud800",
        r"\udfff",
        r"\ud83d\ude00",
        r"\ud83d",
        r"\ude00\ud83d",
        r"\ud800\u0041",
        r"\u00e9",
        r"\n",
        r"\"",
        "\\\\",
    ]
)


@st.composite
def json_string(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.one_of(TEXT.map(lambda t: json.dumps(t)[1:-1]), ESCAPED), max_size=5))
    return '"' + "".join(parts) + '"'


OTHER_VALUE = st.sampled_from(
    ["1", "-0.5e3", "NaN", "Infinity", "-Infinity", "null", "true", "[1, [2]]", '{"a": {}}', "1e400"]
)


@st.composite
def jsonl_line(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind <= 4:  # an object, the field usually there
        items = []
        for _ in range(draw(st.integers(0, 3))):
            key = draw(st.sampled_from(["text", "id", "meta", "t\u00e9xt", "te\\u0078t"]))
            value = (
                draw(st.one_of(json_string(), OTHER_VALUE))
                if key != "text" or draw(st.booleans())
                else draw(json_string())
            )
            items.append(f'"{key}": {value}')
        if draw(st.booleans()):
            items.insert(draw(st.integers(0, len(items))), f'"text": {draw(json_string())}')
        ws = draw(st.sampled_from(["", " ", "\t", "\r"]))
        return (ws + "{" + ", ".join(items) + "}" + ws).encode("utf-8")
    if kind == 5:  # blank: whitespace as Python's str.isspace sees it
        return draw(
            st.text(st.sampled_from(" \t\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u2028\u3000"), max_size=3)
        ).encode()
    if kind == 6:  # not an object, or not JSON
        return draw(
            st.sampled_from(
                [b"[1]", b'"text"', b"3", b"null", b"{not json", b'{"text": "a"} x', b"{}", b"\xef\xbb\xbf{}"]
            )
        )
    if kind == 7:  # invalid UTF-8 inside a string
        bad = draw(
            st.sampled_from([b"\xff", b"\xc3", b"\xe2\x82", b"\xf0\x80\x80", b"\xed\xa0\x80", b"\xc0\xaf"])
        )
        return b'{"text": "a' + bad + b'b"}'
    if kind == 8:  # a raw control character or bad escape in a string
        return draw(st.sampled_from([b'{"text": "a\tb"}', b'{"text": "\\x"}', b'{"text": "\\u12"}']))
    return json.dumps(
        {"text": draw(TEXT), "n": draw(st.integers())}, ensure_ascii=draw(st.booleans())
    ).encode()


@st.composite
def jsonl_file(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(jsonl_line(), max_size=8))
    ending = draw(st.sampled_from([b"\n", b"\r\n"]))
    body = ending.join(lines) + (ending if draw(st.booleans()) else b"")
    return (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=jsonl_file(), field=st.sampled_from(["text", "id"]))
def test_jsonl_like_the_python_reader(tmp_path: Path, body: bytes, field: str) -> None:
    check_same(tmp_path, body, "jsonl", field)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.lists(
        st.binary(max_size=12) | st.sampled_from([b"\r\n", b"\n", b"\xef\xbb\xbf", "é日😀".encode()]),
        max_size=8,
    ).map(b"".join),
    lines=st.booleans(),
)
def test_text_like_the_python_reader(tmp_path: Path, body: bytes, lines: bool) -> None:
    check_same(tmp_path, body, "text", lines=lines)


@pytest.mark.parametrize(
    "body",
    [
        b'{"text": "a"}\n' * 3 + b"{bad\n",
        b'{"a": 1}\n',
        b'{"text": 5}\n',
        b'{"text": "x", "text": null}\n',
        b'{"text": null, "text": "x"}\n',
        b"\n\n  \n",
        b"",
        b'{"text": "\\ud800"}',
    ],
)
def test_listed_edge_cases(tmp_path: Path, body: bytes) -> None:
    check_same(tmp_path, body, "jsonl")


@pytest.mark.parametrize("kind", ["jsonl", "text"])
def test_empty_and_padded_compressed_files(tmp_path: Path, kind: str) -> None:
    ext = ".jsonl" if kind == "jsonl" else ".txt"
    body = b'{"text": "a"}\n{"text": "b"}\n'
    member = gzip.compress(body)
    for compression, raw in (
        ("gzip", b""),
        ("zstd", b""),
        ("gzip", member + b"\0" * 8),  # zero padding after a member, as tape tools write
        ("gzip", member + b"\0" * 3 + member),
        ("gzip", gzip.compress(b"") + member),
    ):
        path = tmp_path / f"in{ext}{SUFFIX[compression]}"
        path.write_bytes(raw)
        for errors in ("strict", "replace"):
            want = python_read(path, kind, "text", False, errors)
            assert not isinstance(want, str), want
            assert rust_read(path, kind, compression, "text", False, errors) == want


def test_truncated_zstd_is_an_error_in_both_readers(tmp_path: Path) -> None:
    body = b"".join(json.dumps({"text": f"document {i} " * 30}).encode() + b"\n" for i in range(500))
    path = tmp_path / "in.jsonl.zst"
    for cut in (3, 1000):
        path.write_bytes(COMPRESS["zstd"](body)[:-cut])
        for message in (
            python_read(path, "jsonl", "text", False, "strict"),
            rust_read(path, "jsonl", "zstd", "text", False, "strict"),
        ):
            assert isinstance(message, str), "a truncated file was read as complete"
            assert message.startswith(f"{path}:") and "cannot read (zstd)" in message


def test_numbers_python_cannot_convert_are_still_read(tmp_path: Path) -> None:
    # An integer of 5000 digits in another field: Python's int() refuses it by default.
    check_same(
        tmp_path, b'{"n": 1' + b"0" * 5000 + b', "text": "x"}\n{"text": 1' + b"0" * 5000 + b"}\n", "jsonl"
    )


def test_truncated_compressed_input_names_the_line(tmp_path: Path) -> None:
    body = b"".join(json.dumps({"text": f"document {i} " * 20}).encode() + b"\n" for i in range(2000))
    path = tmp_path / "in.jsonl.gz"
    path.write_bytes(gzip.compress(body)[:-200])
    message = rust_read(path, "jsonl", "gzip", "text", False, "strict")
    assert isinstance(message, str)
    assert message.startswith(f"{path}:") and "cannot read (gzip)" in message


def test_runs_of_inputs_keep_order_and_group_by_reader() -> None:
    files = [
        InputFile(p, k, None, 0) for p, k in [("a", "jsonl"), ("b", "text"), ("c", "parquet"), ("d", "jsonl")]
    ]
    runs = [(rust, [f.path for f in group]) for rust, group in _runs_of_inputs(files)]
    assert runs == [(True, ["a", "b"]), (False, ["c"]), (True, ["d"])]


def make_writer(tok: bpetok.Tokenizer, out: Path) -> _bpetok.PackWriter:
    return _bpetok.PackWriter(
        tok._core,
        str(out),
        seq_len=64,
        window=16,
        overlap=None,
        pack_buffer=64,
        seed=0,
        pad_id=2,
        samples_per_shard=50,
        add_bos=True,
        add_eos=True,
        overwrite=False,
    )


def test_add_files_reports_progress_and_packs_every_token(tmp_path: Path) -> None:
    tok = bpetok.Tokenizer.default()
    texts = [f"document {i}: " + "the quick brown fox " * (i % 40) for i in range(3000)]
    path = tmp_path / "in.jsonl.zst"
    raw = COMPRESS["zstd"]("".join(json.dumps({"text": t}) + "\n" for t in texts).encode())
    path.write_bytes(raw)
    calls: list[tuple[int, int, int]] = []
    writer = make_writer(tok, tmp_path / "out")
    summaries = writer.add_files(
        [(str(path), "in", "jsonl", "zstd")],
        field="text",
        lines=False,
        errors="strict",
        num_threads=2,
        progress=lambda *counts: calls.append(counts),
    )
    tokens = sum(len(ids) for ids in tok.encode_batch(texts, add_bos=True, add_eos=True))
    assert summaries == [(len(raw), hashlib.sha256(raw).hexdigest(), 3000, "zstd")]
    assert calls and calls[-1] == (len(raw), 3000, tokens)  # the last report is the total
    assert all(x <= y for a, b in itertools.pairwise(calls) for x, y in zip(a, b, strict=True))
    manifest = json.loads(writer.finish("0" * 64, [(str(path), len(raw), summaries[0][1], 3000)], "{}"))
    assert manifest["totals"]["document_tokens"] == tokens


def test_add_files_stops_on_an_exception_from_python(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"text": f"doc {i}"}) + "\n" for i in range(100)))
    writer = make_writer(bpetok.Tokenizer.default(), tmp_path / "out")

    class Stop(Exception):
        pass

    def progress(*_: int) -> None:
        raise Stop("from the progress callback")

    with pytest.raises(Stop, match="from the progress callback"):
        writer.add_files(
            [(str(path), "in", "jsonl", "none")],
            field="text",
            lines=False,
            errors="strict",
            num_threads=2,
            progress=progress,
        )
    with pytest.raises(ValueError, match="finished or closed"):
        writer.finish("0" * 64, [], "{}")
    assert not (tmp_path / "out" / "manifest.json").exists()
