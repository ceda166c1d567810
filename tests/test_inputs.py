"""bpetok.inputs: every input kind, compressed variants, directory order, errors with file:line."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest
import zstandard
from bpetok.inputs import InputError, InputReader, kind_of, resolve_inputs

DOCS = ["Hello world", "", "second\nline\n", "日本語のテキスト 🙂", "  spaces  "]


def read(*inputs: object, **options: object) -> list[tuple[str, str]]:
    return [tuple(d) for d in InputReader([str(i) for i in inputs], **options)]  # type: ignore[arg-type,misc]


def texts(*inputs: object, **options: object) -> list[str]:
    return [text for text, _ in read(*inputs, **options)]


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


# ---- kinds and compressions ------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["", "gz", "zst"])
def test_jsonl_every_compression(tmp_path: Path, compression: str) -> None:
    suffix = f".jsonl.{compression}" if compression else ".jsonl"
    raw = compress(jsonl(DOCS), compression)
    path = write(tmp_path / f"docs{suffix}", raw)
    reader = InputReader([str(path)])
    got = list(reader)
    assert [d.text for d in got] == DOCS
    assert [d.source for d in got] == [f"{path}:{i}" for i in range(1, 6)]
    (file,) = reader.files
    assert file.size == len(raw) == reader.total_size == reader.bytes_read
    assert file.sha256 == hashlib.sha256(raw).hexdigest()
    assert file.documents == len(DOCS)
    assert file.compression == ({"gz": "gzip", "zst": "zstd"}.get(compression))


@pytest.mark.parametrize("compression", ["", "gz", "zst"])
def test_text_whole_file_and_lines(tmp_path: Path, compression: str) -> None:
    data = "first line\r\n\nthird é\n\n".encode()
    suffix = f".txt.{compression}" if compression else ".txt"
    path = write(tmp_path / f"doc{suffix}", compress(data, compression))
    # A whole file is one document, byte for byte, trailing newline included.
    assert read(path) == [(data.decode(), str(path))]
    # --lines: \n and \r\n endings removed, empty lines skipped but counted.
    assert read(path, lines=True) == [("first line", f"{path}:1"), ("third é", f"{path}:3")]


def test_json_extension_is_jsonl_and_field_option(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", jsonl(["x", "y"], field="content"))
    assert texts(path, field="content") == ["x", "y"]


def test_empty_text_file_is_one_empty_document(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.txt", b"")
    assert read(path) == [("", str(path))]
    assert read(path, lines=True) == []


def test_byte_order_mark_is_dropped(tmp_path: Path) -> None:
    bom = b"\xef\xbb\xbf"
    assert texts(write(tmp_path / "a.jsonl", bom + b'{"text": "x"}\n')) == ["x"]
    assert texts(write(tmp_path / "a.txt", bom + b"y\n")) == ["y\n"]


def test_blank_jsonl_lines_are_skipped(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", b'\n{"text": "a"}\n   \n\n{"text": "b"}')
    assert read(path) == [("a", f"{path}:2"), ("b", f"{path}:5")]


def test_multi_frame_zstd_and_multi_member_gzip(tmp_path: Path) -> None:
    one, two = jsonl(["a", "b"]), jsonl(["c"])
    zst = write(tmp_path / "a.jsonl.zst", compress(one, "zst") + compress(two, "zst"))
    gz = write(tmp_path / "b.jsonl.gz", compress(one, "gz") + compress(two, "gz"))
    assert texts(zst) == texts(gz) == ["a", "b", "c"]


def test_input_format_overrides_the_name(tmp_path: Path) -> None:
    path = write(tmp_path / "data.raw", b'{"text": "a"}\n')
    with pytest.raises(InputError, match=r"data\.raw: cannot tell the kind.*--input-format"):
        read(path)
    assert texts(path, input_format="jsonl") == ["a"]
    assert texts(path, input_format="text") == ['{"text": "a"}\n']
    assert kind_of("x.JSONL.ZST") == ("jsonl", "zstd")
    assert kind_of("x.md") is None


# ---- directories -----------------------------------------------------------------------------


def test_directory_walk_in_sorted_order(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    for rel in ["b.jsonl", "a-b/x.txt", "a/z.txt", "a/sub/y.txt.gz", "A.txt", "c.parquet.zst"]:
        body = compress(
            rel.encode() if "jsonl" not in rel else jsonl([rel]), "gz" if rel.endswith(".gz") else ""
        )
        write(root / rel, body)
    write(root / "notes.md", b"ignored")
    write(root / ".hidden.txt", b"ignored")
    write(root / ".git" / "x.txt", b"ignored")
    files = [f.path for f in resolve_inputs([str(root)])]
    rels = [os.path.relpath(p, root) for p in files]
    # path components compared in code point order: "A" < "a" < "a-b" < "b" < "c..."
    assert rels == ["A.txt", "a/sub/y.txt.gz", "a/z.txt", "a-b/x.txt", "b.jsonl", "c.parquet.zst"]
    assert [f.kind for f in resolve_inputs([str(root)])] == [
        "text",
        "text",
        "text",
        "text",
        "jsonl",
        "parquet",
    ]


def test_inputs_keep_command_line_order(tmp_path: Path) -> None:
    a = write(tmp_path / "a.txt", b"a")
    b = write(tmp_path / "b.txt", b"b")
    assert texts(b, a, tmp_path / "a.txt") == ["b", "a", "a"]


def test_missing_and_empty_inputs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.jsonl: no such file or directory"):
        InputReader([str(tmp_path / "nope.jsonl")])
    (tmp_path / "empty").mkdir()
    write(tmp_path / "empty" / "readme.md", b"x")
    with pytest.raises(InputError, match=r"empty: no input files in this directory"):
        InputReader([str(tmp_path / "empty")])
    with pytest.raises(InputError, match="stdin given more than once"):
        InputReader(["-", "-"])


# ---- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"text": "a"}\n{"text": "b"\n', r":2: invalid JSON: .*column"),
        (b'{"text": "a"}\n\n[1, 2]\n', r":3: expected a JSON object, got an array"),
        (
            b'{"text": "a"}\n{"body": "b", "n": 1}\n',
            r":2: record has no field 'text' \(its fields: 'body', 'n'\)",
        ),
        (b'{"text": 5}\n', r":1: field 'text' is a number, not a string"),
        (b'{"text": null}\n', r":1: field 'text' is null, not a string"),
        (
            b'{"text": "a"}\n{"text": "b\xff"}\n',
            r":2: invalid UTF-8 \(byte 0xff at column 12\).*--errors replace",
        ),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path: Path, body: bytes, message: str) -> None:
    for name, data in [("bad.jsonl", body), ("bad.jsonl.gz", gzip.compress(body))]:
        path = write(tmp_path / name, data)
        with pytest.raises(InputError, match=f"^{path}{message}"):
            read(path)


def test_invalid_utf8_in_text_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.txt", b"ok\nfine\nbad \xc3( here\n")
    with pytest.raises(InputError, match=rf"^{path}:3: invalid UTF-8 \(byte 0xc3 at column 5\)"):
        read(path)
    with pytest.raises(InputError, match=rf"^{path}:3: invalid UTF-8"):
        read(path, lines=True)


def test_errors_replace_reads_invalid_bytes_as_replacement_character(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.txt", b"a\xffb\n")
    assert texts(path, errors="replace") == ["a\ufffdb\n"]
    path = write(tmp_path / "bad.jsonl", b'{"text": "a\xffb"}\n')
    assert texts(path, errors="replace") == ["a\ufffdb"]


def test_truncated_and_corrupt_compressed_files(tmp_path: Path) -> None:
    data = gzip.compress(jsonl(["a"] * 1000))
    path = write(tmp_path / "cut.jsonl.gz", data[: len(data) // 2])
    with pytest.raises(InputError, match=rf"^{path}:\d+: cannot read \(gzip\)"):
        read(path)
    path = write(tmp_path / "not.jsonl.gz", b"plain text, not gzip")
    with pytest.raises(InputError, match=rf"^{path}:1: cannot read \(gzip\)"):
        read(path)
    path = write(tmp_path / "not.jsonl.zst", b"plain text, not zstd")
    with pytest.raises(InputError, match=rf"^{path}:1: cannot read \(zstd\)"):
        read(path)


# ---- Parquet ---------------------------------------------------------------------------------


def test_parquet_without_pyarrow_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    path = write(tmp_path / "a.parquet", b"PAR1")
    with pytest.raises(
        InputError, match=r"a\.parquet: reading Parquet needs pyarrow.*pip install 'bpetok\[parquet\]'"
    ):
        read(path)


@pytest.mark.parametrize("compression", ["", "gz"])
def test_parquet_column(tmp_path: Path, compression: str) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"n": [1, 2, 3], "text": ["a", "b é", ""]}), plain)
    path = write(
        tmp_path / f"t.parquet{'.' + compression if compression else ''}",
        compress(plain.read_bytes(), compression),
    )
    assert read(path) == [("a", f"{path}:row 1"), ("b é", f"{path}:row 2"), ("", f"{path}:row 3")]
    with pytest.raises(InputError, match="no column 'body'"):
        read(path, field="body")
    with pytest.raises(InputError, match="column 'n' is int64, not a string column"):
        read(path, field="n")
    pq.write_table(pa.table({"text": ["a", None]}), plain)
    with pytest.raises(InputError, match=rf"{plain}:row 2: column 'text' is null"):
        read(plain)


# ---- stdin, progress, bounded memory ---------------------------------------------------------

_STDIN_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from bpetok.inputs import InputReader
    reader = InputReader(["-"], input_format=sys.argv[1], lines=sys.argv[2] == "lines")
    docs = [list(d) for d in reader]
    f = reader.files[0]
    print(json.dumps({"docs": docs, "size": f.size, "sha256": f.sha256, "compression": f.compression}))
    """
)


@pytest.mark.parametrize("compression", ["", "gz", "zst"])
def test_stdin(compression: str) -> None:
    raw = compress(jsonl(["a", "b"]), compression)
    out = subprocess.run(
        [sys.executable, "-c", _STDIN_SCRIPT, "auto", "-"], input=raw, capture_output=True, check=True
    )
    result = json.loads(out.stdout)
    assert result["docs"] == [["a", "<stdin>:1"], ["b", "<stdin>:2"]]
    assert result["size"] == len(raw)
    assert result["sha256"] == hashlib.sha256(raw).hexdigest()
    assert result["compression"] == {"gz": "gzip", "zst": "zstd"}.get(compression)


@pytest.mark.parametrize("compression", ["gz", "zst"])
def test_stdin_detection_survives_a_slow_first_write(tmp_path: Path, compression: str) -> None:
    """The magic bytes arriving one by one: both readers (Python's, and pack's in Rust) still
    detect the compression."""
    raw = compress(jsonl(["a", "b"]), compression)
    out_dir = tmp_path / "out"
    for command in (
        [sys.executable, "-c", _STDIN_SCRIPT, "auto", "-"],
        [sys.executable, "-m", "bpetok", "pack", "-", "-o", str(out_dir), "--seq-len", "8", "--window", "4"],
    ):
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
        if command[1] == "-c":
            assert json.loads(out)["docs"] == [["a", "<stdin>:1"], ["b", "<stdin>:2"]]
        else:
            manifest = json.loads((out_dir / "manifest.json").read_text())
            assert manifest["inputs"][0]["documents"] == 2
            assert manifest["inputs"][0]["sha256"] == hashlib.sha256(raw).hexdigest()


def test_stdin_as_text_lines() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _STDIN_SCRIPT, "text", "lines"],
        input=b"x\ny\n",
        capture_output=True,
        check=True,
    )
    assert json.loads(out.stdout)["docs"] == [["x", "<stdin>:1"], ["y", "<stdin>:2"]]


def test_progress_callback_counts_raw_bytes(tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl.gz", gzip.compress(jsonl(["x"] * 500)))
    b = write(tmp_path / "b.txt", b"y" * 3000)
    seen: list[int] = []
    reader = InputReader([str(a), str(b)], on_bytes=seen.append)
    assert reader.total_size == a.stat().st_size + b.stat().st_size
    assert len(list(reader)) == 501
    assert sum(seen) == reader.total_size == reader.bytes_read


def test_large_gzip_is_read_with_bounded_memory(tmp_path: Path) -> None:
    line = ("the quick brown fox jumps over the lazy dog " * 23 + "\n").encode()  # ~1 KB
    lines_per_block = 1024
    blocks = 32  # 32 MB of text
    path = tmp_path / "big.txt.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        for _ in range(blocks):
            f.write(line * lines_per_block)
    tracemalloc.start()
    try:
        count = 0
        for _ in InputReader([str(path)], lines=True):
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == blocks * lines_per_block
    assert peak < 8 << 20, f"peak {peak / 1e6:.1f} MB while reading 32 MB of text"
