"""The reader (``bpetok::data::input``) through the public API: every input kind and compression,
directories, stdin, Parquet, and each error with its kind and place, pinned against fixtures and
the rules of ``docs/cli.md`` ("Inputs"). A document is checked by its ids: what
``bpetok.encode_files`` writes for it must be ``bpetok.encode`` of the text the rules say it is."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import bpetok
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

DOCS = ["Hello world", "", "second\nline\n", "日本語のテキスト 🙂", "  spaces  "]


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gz":
        return gzip.compress(data)
    if compression == "zst":
        return zstandard.ZstdCompressor().compress(data)
    return data


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def jsonl(docs: list[str], field: str = "text") -> bytes:
    return "".join(json.dumps({field: d, "id": i}) + "\n" for i, d in enumerate(docs)).encode()


def encoded(tmp_path: Path, *inputs: Path | str, **options: Any) -> list[list[int]]:
    out = tmp_path / "ids.out.jsonl"
    bpetok.encode_files(list(inputs), out, **options)
    return [json.loads(line)["ids"] for line in out.read_text().splitlines()]


def ids(*texts: str) -> list[list[int]]:
    return [bpetok.encode(t) for t in texts]


def input_error(tmp_path: Path, *inputs: Path | str, **options: Any) -> bpetok.InputError:
    with pytest.raises(bpetok.InputError) as caught:
        bpetok.encode_files(list(inputs), tmp_path / "failed.out.jsonl", **options)
    assert not (tmp_path / "failed.out.jsonl").exists()
    return caught.value


def manifest_inputs(tmp_path: Path, *inputs: Path | str, **options: Any) -> list[dict[str, Any]]:
    result = bpetok.pack(list(inputs), tmp_path / "shards", seq_len=16, window=4, overwrite=True, **options)
    return list(result.manifest["inputs"])


# ---- kinds and compressions ------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["", "gz", "zst"])
def test_jsonl_every_compression(tmp_path: Path, compression: str) -> None:
    suffix = f".jsonl.{compression}" if compression else ".jsonl"
    raw = compress(jsonl(DOCS), compression)
    path = write(tmp_path / f"docs{suffix}", raw)
    assert encoded(tmp_path, path) == ids(*DOCS)
    (entry,) = manifest_inputs(tmp_path, path)
    assert entry == {
        "path": str(path),
        "size": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "documents": len(DOCS),
    }


@pytest.mark.parametrize("compression", ["", "gz", "zst"])
def test_text_whole_file_and_lines(tmp_path: Path, compression: str) -> None:
    data = "first line\r\n\nthird é\n\n".encode()
    suffix = f".txt.{compression}" if compression else ".txt"
    path = write(tmp_path / f"doc{suffix}", compress(data, compression))
    # A whole file is one document, byte for byte, trailing newline included.
    assert encoded(tmp_path, path) == ids(data.decode())
    # lines: \n and \r\n endings removed, empty lines skipped.
    assert encoded(tmp_path, path, lines=True) == ids("first line", "third é")


def test_json_extension_is_jsonl_and_field_option(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", jsonl(["x", "y"], field="content"))
    assert encoded(tmp_path, path, field="content") == ids("x", "y")


def test_empty_text_file_is_no_document(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.txt", b"")
    bom_only = write(tmp_path / "bom.txt", b"\xef\xbb\xbf")
    assert encoded(tmp_path, path, bom_only) == []
    assert encoded(tmp_path, path, lines=True) == []
    assert [e["documents"] for e in manifest_inputs(tmp_path, path, bom_only)] == [0, 0]


def test_byte_order_mark_is_dropped(tmp_path: Path) -> None:
    bom = b"\xef\xbb\xbf"
    assert encoded(tmp_path, write(tmp_path / "a.jsonl", bom + b'{"text": "x"}\n')) == ids("x")
    assert encoded(tmp_path, write(tmp_path / "a.txt", bom + b"y\n")) == ids("y\n")


def test_blank_jsonl_lines_are_skipped(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", b'\n{"text": "a"}\n   \n\t\r\n\n{"text": "b"}')
    assert encoded(tmp_path, path) == ids("a", "b")
    bad = write(tmp_path / "b.jsonl", b'\n{"text": "a"}\n   \n\n{"text": 1}')
    err = input_error(tmp_path, bad)
    assert (err.kind, err.line) == ("not_a_string", 5)


def test_multi_frame_zstd_and_multi_member_gzip(tmp_path: Path) -> None:
    one, two = jsonl(["a", "b"]), jsonl(["c"])
    zst = write(tmp_path / "a.jsonl.zst", compress(one, "zst") + compress(two, "zst"))
    gz = write(tmp_path / "b.jsonl.gz", compress(one, "gz") + compress(two, "gz"))
    assert encoded(tmp_path, zst) == encoded(tmp_path, gz) == ids("a", "b", "c")


def test_input_format_overrides_the_name(tmp_path: Path) -> None:
    path = write(tmp_path / "data.raw", b'{"text": "a"}\n')
    err = input_error(tmp_path, path)
    assert err.kind == "unknown_format" and str(err).startswith(f"{path}: cannot tell the kind")
    assert encoded(tmp_path, path, input_format="jsonl") == ids("a")
    assert encoded(tmp_path, path, input_format="text") == ids('{"text": "a"}\n')
    upper = write(tmp_path / "x.JSONL.ZST", compress(jsonl(["z"]), "zst"))
    assert encoded(tmp_path, upper) == ids("z")


def test_json_values_python_accepts(tmp_path: Path) -> None:
    path = write(
        tmp_path / "a.jsonl",
        b'{"text": "a", "n": NaN, "m": -Infinity}\n'
        b'{"text": "first", "text": "last"}\n'
        b'{"big": ' + b"9" * 5000 + b', "text": "b"}\n'
        b'{"text": "\\u00e9\\ud83d\\ude00\\n"}\n',
    )
    assert encoded(tmp_path, path) == ids("a", "last", "b", "é😀\n")


# ---- directories -----------------------------------------------------------------------------


def test_directory_walk_in_sorted_order(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    for rel in ["b.jsonl", "a-b/x.txt", "a/z.txt", "a/sub/y.txt.gz", "A.txt"]:
        body = jsonl([rel]) if "jsonl" in rel else rel.encode()
        write(root / rel, compress(body, "gz" if rel.endswith(".gz") else ""))
    write(root / "notes.md", b"ignored")
    write(root / ".hidden.txt", b"ignored")
    write(root / ".git" / "x.txt", b"ignored")
    # path components compared in code point order: "A" < "a" < "a-b" < "b"
    order = ["A.txt", "a/sub/y.txt.gz", "a/z.txt", "a-b/x.txt", "b.jsonl"]
    assert encoded(tmp_path, root) == ids(*order)
    assert [os.path.relpath(e["path"], root) for e in manifest_inputs(tmp_path, root)] == order


def test_inputs_keep_command_line_order(tmp_path: Path) -> None:
    a = write(tmp_path / "a.txt", b"a")
    b = write(tmp_path / "b.txt", b"b")
    assert encoded(tmp_path, b, a, tmp_path / "a.txt") == ids("b", "a", "a")


def test_missing_and_empty_inputs(tmp_path: Path) -> None:
    err = input_error(tmp_path, tmp_path / "nope.jsonl")
    assert err.kind == "not_found" and str(err) == f"{tmp_path / 'nope.jsonl'}: no such file or directory"
    write(tmp_path / "empty" / "readme.md", b"x")
    err = input_error(tmp_path, tmp_path / "empty")
    assert err.kind == "no_input_files" and str(err).startswith(f"{tmp_path / 'empty'}: no input files")
    err = input_error(tmp_path, "-", "-")
    assert err.kind == "stdin_twice"


# ---- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "kind", "line", "message"),
    [
        (b'{"text": "a"}\n{"text": "b"\n', "invalid_json", 2, "invalid JSON"),
        (b'{"text": "a"}\n\n[1, 2]\n', "not_an_object", 3, "expected a JSON object, got an array"),
        (
            b'{"text": "a"}\n{"body": "b", "n": 1}\n',
            "missing_field",
            2,
            "record has no field 'text' (its fields: 'body', 'n')",
        ),
        (b'{"text": 5}\n', "not_a_string", 1, "field 'text' is a number, not a string"),
        (b'{"text": null}\n', "not_a_string", 1, "field 'text' is null, not a string"),
        (b'{"text": "a"}\n{"text": "b\xff"}\n', "invalid_utf8", 2, "invalid UTF-8 (byte 0xff at column 12)"),
    ],
)
def test_jsonl_errors_name_file_and_line(
    tmp_path: Path, body: bytes, kind: str, line: int, message: str
) -> None:
    for name, data in [("bad.jsonl", body), ("bad.jsonl.gz", gzip.compress(body))]:
        path = write(tmp_path / name, data)
        err = input_error(tmp_path, path)
        assert (err.kind, err.file, err.line) == (kind, str(path), line)
        assert str(err).startswith(f"{path}:{line}: {message}"), str(err)


def test_invalid_utf8_in_text_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.txt", b"ok\nfine\nbad \xc3( here\n")
    for lines in (False, True):
        err = input_error(tmp_path, path, lines=lines)
        assert (err.kind, err.line, err.column) == ("invalid_utf8", 3, 5)
        assert str(err) == f"{path}:3: invalid UTF-8 (byte 0xc3 at column 5)"


def test_errors_replace_reads_invalid_bytes_as_replacement_character(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.txt", b"a\xffb\xe2\x82\n")
    assert encoded(tmp_path, path, errors="replace") == ids("a\ufffdb\ufffd\n")
    path = write(tmp_path / "bad.jsonl", b'{"text": "a\xffb"}\n{"text": "\\udc00x"}\n')
    assert encoded(tmp_path, path, errors="replace") == ids("a\ufffdb", "\ufffdx")
    err = input_error(tmp_path, path)
    assert err.kind == "invalid_utf8"


def test_truncated_and_corrupt_compressed_files(tmp_path: Path) -> None:
    data = gzip.compress(jsonl(["a"] * 1000))
    path = write(tmp_path / "cut.jsonl.gz", data[: len(data) // 2])
    err = input_error(tmp_path, path)
    assert err.kind == "decompress" and str(err).startswith(f"{path}:") and "cannot read (gzip)" in str(err)
    path = write(tmp_path / "not.jsonl.gz", b"plain text, not gzip")
    assert str(input_error(tmp_path, path)).startswith(f"{path}:1: cannot read (gzip)")
    path = write(tmp_path / "not.jsonl.zst", b"plain text, not zstd")
    assert str(input_error(tmp_path, path)).startswith(f"{path}:1: cannot read (zstd)")
    data = compress(jsonl(["a"] * 1000), "zst")
    path = write(tmp_path / "cut.jsonl.zst", data[: len(data) // 2])
    assert input_error(tmp_path, path).kind == "decompress"


def test_empty_and_zero_padded_compressed_files(tmp_path: Path) -> None:
    assert encoded(tmp_path, write(tmp_path / "e.jsonl.gz", b"")) == []
    assert encoded(tmp_path, write(tmp_path / "e.jsonl.zst", b"")) == []
    padded = write(tmp_path / "p.jsonl.gz", gzip.compress(jsonl(["a"])) + b"\0" * 100)
    assert encoded(tmp_path, padded) == ids("a")


# ---- Parquet ---------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["", "gz", "zst"])
@pytest.mark.parametrize("codec", ["snappy", "zstd", "gzip", "none"])
def test_parquet_column(tmp_path: Path, compression: str, codec: str) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    plain = tmp_path / "plain.parquet"
    pq.write_table(
        pa.table({"n": [1, 2, 3], "text": ["a", "b é", ""]}), plain, compression=codec, row_group_size=2
    )
    suffix = f".{compression}" if compression else ""
    path = write(tmp_path / f"t.parquet{suffix}", compress(plain.read_bytes(), compression))
    assert encoded(tmp_path, path) == ids("a", "b é", "")
    err = input_error(tmp_path, path, field="body")
    assert err.kind == "missing_column" and "no column 'body'" in str(err)
    err = input_error(tmp_path, path, field="n")
    assert err.kind == "not_a_string_column" and "column 'n' is" in str(err)


def test_parquet_large_string_and_nulls(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "large.parquet"
    pq.write_table(pa.table({"text": pa.array(["x", "日本"], type=pa.large_string())}), path)
    assert encoded(tmp_path, path) == ids("x", "日本")
    pq.write_table(pa.table({"text": ["a", None]}), path)
    err = input_error(tmp_path, path)
    assert (err.kind, err.row) == ("null_value", 2)
    assert str(err) == f"{path}:row 2: column 'text' is null"


def test_parquet_packs_like_jsonl_of_the_same_texts(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    texts = [f"document {i} " * (i % 17) for i in range(300)]
    pq.write_table(pa.table({"text": texts}), tmp_path / "a.parquet", row_group_size=64)
    write(tmp_path / "a.jsonl", jsonl(texts))
    a = bpetok.pack(tmp_path / "a.parquet", tmp_path / "p", seq_len=64, window=16)
    b = bpetok.pack(tmp_path / "a.jsonl", tmp_path / "j", seq_len=64, window=16)
    assert (a.documents, a.tokens, a.samples) == (b.documents, b.tokens, b.samples)
    for shard in a.manifest["shards"]:
        for kind in ("tokens", "segments", "sample_index"):
            name = f"{shard['name']}.{kind}.npy"
            assert (tmp_path / "p" / name).read_bytes() == (tmp_path / "j" / name).read_bytes()


def test_garbage_parquet_is_an_input_error(tmp_path: Path) -> None:
    err = input_error(tmp_path, write(tmp_path / "bad.parquet", b"PAR1 this is not parquet PAR1"))
    assert err.kind == "parquet" and str(err).startswith(f"{tmp_path / 'bad.parquet'}: ")


# ---- stdin, progress -------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["", "gz", "zst"])
def test_stdin(tmp_path: Path, compression: str) -> None:
    raw = compress(jsonl(["a", "b"]), compression)
    out = tmp_path / "shards"
    result = subprocess.run(
        [sys.executable, "-m", "bpetok", "pack", "-", "-o", str(out), "--seq-len", "8", "--window", "4"],
        input=raw,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads((out / "manifest.json").read_text())["inputs"]
    assert entry == {"path": "-", "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest(), "documents": 2}


@pytest.mark.parametrize("compression", ["gz", "zst"])
def test_stdin_detection_survives_a_slow_first_write(tmp_path: Path, compression: str) -> None:
    raw = compress(jsonl(["a", "b"]), compression)
    command = [sys.executable, "-m", "bpetok", "encode", "-"]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdin is not None
        for byte in raw[:3]:
            proc.stdin.write(bytes([byte]))
            proc.stdin.flush()
            time.sleep(0.05)
        out, err = proc.communicate(raw[3:], timeout=60)
    assert proc.returncode == 0, err
    assert [json.loads(line)["ids"] for line in out.decode().splitlines()] == ids("a", "b")


def test_stdin_as_text_lines() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bpetok", "encode", "-", "--input-format", "text", "--lines"],
        input=b"x\ny\n",
        capture_output=True,
        timeout=60,
    )
    assert [json.loads(line)["ids"] for line in result.stdout.decode().splitlines()] == ids("x", "y")


def test_progress_reports_raw_bytes(tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl.gz", gzip.compress(jsonl(["x"] * 500)))
    b = write(tmp_path / "b.txt", b"y" * 3000)
    seen: list[bpetok.Progress] = []
    result = bpetok.encode_files([a, b], tmp_path / "ids.jsonl", progress=seen.append)
    total = a.stat().st_size + b.stat().st_size
    assert result.documents == 501 and result.input_bytes == total
    assert seen and seen[-1] == bpetok.Progress(total, total, 501, result.tokens)


# ---- JSONL lines against Python's json (the JSON reference, not a second reader) -------------

_JSON_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _JSON_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_JSON_TEXT, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200)
@given(
    records=st.lists(
        st.tuples(
            _JSON_TEXT,
            st.dictionaries(_JSON_TEXT.filter(lambda k: k != "text"), _VALUES, max_size=3),
            st.booleans(),
            st.sampled_from(["", " ", "\t", "\r"]),
        ),
        max_size=8,
    )
)
def test_jsonl_documents_are_what_json_loads_reads(tmp_path_factory: Any, records: list[Any]) -> None:
    tmp = tmp_path_factory.mktemp("hyp")
    lines = []
    for text, extra, ascii_only, pad in records:
        obj = {**extra, "text": text}
        lines.append(pad + json.dumps(obj, ensure_ascii=ascii_only) + pad + "\n")
    path = write(tmp / "h.jsonl", "".join(lines).encode())
    want = [json.loads(line)["text"] for line in lines]
    assert encoded(tmp, path) == ids(*want)
