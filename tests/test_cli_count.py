"""``bpetok count`` (and ``bpetok.count_files``) end to end, and ``bpetok decode`` on inputs of many
batches: its output in order on any thread count, and the first bad line as the error after
every record before it."""

from __future__ import annotations

import gzip
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import bpetok
import pytest

DOCS = [
    "Hello world",
    "",
    "日本語のテキストです。 🙂 emoji",
    "def f(x):\n    return x + 1\n",
] + [f"document {i}: " + "lorem ipsum dolor sit amet " * (i % 40) for i in range(200)]


def bpetok_cli(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "bpetok", *map(str, args)], input=stdin, capture_output=True, timeout=120
    )


def ok(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    result = bpetok_cli(*args, stdin=stdin)
    assert result.returncode == 0, result.stderr.decode()
    return result


def write_jsonl(path: Path, docs: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    return path


def tokens(docs: list[str], *, bos: bool = False, eos: bool = False) -> int:
    return sum(len(bpetok.encode(d, add_bos=bos, add_eos=eos)) for d in docs)


def utf8_bytes(docs: list[str]) -> int:
    return sum(len(d.encode()) for d in docs)


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    first = write_jsonl(tmp_path / "a.jsonl", DOCS[:120])
    second = tmp_path / "b.txt"
    second.write_text("\n".join(DOCS[120:]), encoding="utf-8")
    return first, second


# ---- count ----------------------------------------------------------------------------------------------


def test_count_prints_a_row_per_input_and_the_total(inputs: tuple[Path, Path]) -> None:
    first, second = inputs
    result = ok("count", first, second, "--lines")
    lines = result.stdout.decode().splitlines()
    assert lines[0].split() == ["documents", "tokens", "bytes", "tokens/byte", "input"]
    docs_b = [d for d in "\n".join(DOCS[120:]).split("\n") if d]
    rows = [(DOCS[:120], str(first)), (docs_b, str(second)), (DOCS[:120] + docs_b, "total")]
    assert len(lines) == 1 + len(rows)
    for line, (docs, name) in zip(lines[1:], rows, strict=True):
        count, toks, size, per_byte, shown = line.split()
        assert shown == name
        assert int(count.replace(",", "")) == len(docs)
        assert int(toks.replace(",", "")) == tokens(docs)
        assert int(size.replace(",", "")) == utf8_bytes(docs)
        assert per_byte == f"{tokens(docs) / utf8_bytes(docs):.4f}"
    # Numbers are right-aligned under their headings.
    assert len({len(line.rsplit("  ", 1)[0]) for line in lines}) == 1
    # The summary line on stderr, as for the other commands.
    assert result.stderr.decode().startswith(f"bpetok count: {len(DOCS[:120]) + len(docs_b)} documents, ")
    assert result.stderr.count(b"\n") == 1


def test_count_json(inputs: tuple[Path, Path]) -> None:
    first, second = inputs
    result = ok("count", first, second, "--json", "--bos", "--eos")
    assert result.stderr == b""
    summary = json.loads(result.stdout)
    docs_b = ["\n".join(DOCS[120:])]  # without --lines, the whole file is one document
    assert summary["command"] == "count"
    assert summary["inputs"] == 2
    assert summary["documents"] == 121
    assert summary["tokens"] == tokens(DOCS[:120], bos=True, eos=True) + tokens(docs_b, bos=True, eos=True)
    assert summary["text_bytes"] == utf8_bytes(DOCS[:120]) + utf8_bytes(docs_b)
    assert summary["input_bytes"] == first.stat().st_size + second.stat().st_size
    assert summary["tokens_per_byte"] == round(summary["tokens"] / summary["text_bytes"], 6)
    assert summary["output"] is None
    assert set(summary) >= {"seconds", "mb_per_s", "per_input"}
    per_input = summary["per_input"]
    assert [p["input"] for p in per_input] == [str(first), str(second)]
    assert per_input[0]["documents"] == 120 and per_input[1]["documents"] == 1
    assert per_input[0]["tokens"] == tokens(DOCS[:120], bos=True, eos=True)
    assert per_input[1]["input_bytes"] == second.stat().st_size
    assert sum(p["tokens"] for p in per_input) == summary["tokens"]


def test_count_equals_what_encode_writes(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", DOCS * 20)
    encoded = ok("encode", corpus, "--eos", "--json", "-o", tmp_path / "ids.jsonl")
    counted = ok("count", corpus, "--eos", "--json", "--threads", "2")
    assert json.loads(counted.stdout)["tokens"] == json.loads(encoded.stdout)["tokens"]
    one = ok("count", corpus, "--eos", "--json", "--threads", "1")
    assert json.loads(one.stdout)["per_input"] == json.loads(counted.stdout)["per_input"]


def test_count_directories_gzip_stdin_and_quiet(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    write_jsonl(corpus / "a.jsonl", DOCS[:10])
    with gzip.open(corpus / "sub" / "b.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write("".join(json.dumps({"text": d}) + "\n" for d in DOCS[10:20]))
    (corpus / "skipped.bin").write_bytes(b"\0")
    result = ok("count", corpus, "--quiet")
    assert result.stderr == b""
    rows = [line.split() for line in result.stdout.decode().splitlines()[1:]]
    assert [row[-1] for row in rows] == [str(corpus / "a.jsonl"), str(corpus / "sub" / "b.jsonl.gz"), "total"]
    assert [int(row[1].replace(",", "")) for row in rows] == [
        tokens(DOCS[:10]),
        tokens(DOCS[10:20]),
        tokens(DOCS[:20]),
    ]
    piped = ok("count", "-", "--json", stdin=(corpus / "a.jsonl").read_bytes())
    summary = json.loads(piped.stdout)
    assert summary["per_input"][0]["input"] == "<stdin>"
    assert summary["tokens"] == tokens(DOCS[:10])
    other = write_jsonl(tmp_path / "body.jsonl", DOCS[:5])
    missing = bpetok_cli("count", other, "--field", "body")
    assert missing.returncode == 1
    assert missing.stderr.decode() == (
        f"bpetok: error: {other}:1: record has no field 'body' (its fields: 'text'); "
        "name the field with --field\n"
    )


def test_count_errors_are_one_line_as_for_encode(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    errors = {}
    for command in ("count", "encode"):
        result = bpetok_cli(command, bad, "--quiet")
        assert result.returncode == 1
        errors[command] = result.stderr.decode()
    assert errors["count"] == errors["encode"]
    assert errors["count"].startswith(f"bpetok: error: {bad}:2: invalid UTF-8")
    assert errors["count"].endswith("; pass --errors replace to read invalid bytes as U+FFFD\n")
    replaced = ok("count", bad, "--errors", "replace", "--json")
    assert json.loads(replaced.stdout)["tokens"] == tokens(["fine", "caf\ufffd"])
    missing = bpetok_cli("count", tmp_path / "missing.jsonl")
    assert missing.returncode == 1
    assert (
        missing.stderr.decode() == f"bpetok: error: {tmp_path / 'missing.jsonl'}: no such file or directory\n"
    )
    (tmp_path / "x.csv").write_text("a,b\n")
    unknown = bpetok_cli("count", tmp_path / "x.csv")
    assert unknown.returncode == 1 and unknown.stderr.decode().endswith(", or pass --input-format\n")
    usage = bpetok_cli("count")
    assert usage.returncode == 2 and b"usage: bpetok count" in usage.stderr
    assert bpetok_cli("count", bad, "--threads", "0").returncode == 2


def test_count_files_api(inputs: tuple[Path, Path]) -> None:
    first, second = inputs
    seen: list[bpetok.Progress] = []
    result = bpetok.count_files([first, os.fspath(second)], lines=True, num_threads=2, progress=seen.append)
    assert isinstance(result, bpetok.CountResult)
    assert result.inputs == 2 and len(result.per_input) == 2
    assert isinstance(result.per_input[0], bpetok.InputCount)
    assert result.per_input[0].name == str(first)
    assert result.per_input[0].tokens == tokens(DOCS[:120])
    assert result.tokens == sum(p.tokens for p in result.per_input)
    assert result.text_bytes == sum(p.text_bytes for p in result.per_input)
    assert result.tokens_per_byte == pytest.approx(result.tokens / result.text_bytes)
    assert seen and seen[-1].documents == result.documents
    with pytest.raises(bpetok.InputError) as info:
        bpetok.count_files(first, field="body")
    assert info.value.kind == "missing_field" and info.value.line == 1
    with pytest.raises(ValueError, match="errors"):
        bpetok.count_files(first, errors="ignore")  # type: ignore[arg-type]


def test_count_draws_no_bar_that_stays_on_a_terminal(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "big.jsonl", DOCS * 400)
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bpetok", "count", str(corpus), "--threads", "1"],
            stderr=terminal,
            stdout=subprocess.DEVNULL,
        )
        os.close(terminal)
        terminal = -1
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=120) == 0
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    text = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
    shown = [line.split("\r")[-1].rstrip() for line in text.split("\n")]
    assert shown[-1] == "" and len(shown) == 2, shown
    assert shown[0].startswith(f"bpetok count: {len(DOCS) * 400:,} documents"), shown


# ---- decode on many batches -----------------------------------------------------------------------------


def test_decode_of_many_batches_is_in_order_on_any_thread_count(tmp_path: Path) -> None:
    docs = [f"{i}: " + DOCS[i % len(DOCS)] for i in range(20_000)]
    ids = tmp_path / "ids.jsonl"
    ok("encode", write_jsonl(tmp_path / "docs.jsonl", docs), "-o", ids)
    expected = "".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs).encode()
    for threads in ("1", "2", "3"):
        result = ok("decode", ids, "--threads", threads, "--json", "-o", tmp_path / "out.jsonl")
        assert (tmp_path / "out.jsonl").read_bytes() == expected, threads
        assert json.loads(result.stdout)["documents"] == len(docs)


def test_decode_error_deep_in_the_input_comes_after_every_record_before_it(tmp_path: Path) -> None:
    lines = [json.dumps({"ids": bpetok.encode(f"record {i}")}) for i in range(30_000)]
    lines[25_000] = '{"ids": [1, 99999]}'
    lines[27_000] = '{"ids": "x"}'
    ids = tmp_path / "ids.jsonl"
    ids.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for threads in ("1", "2"):
        result = bpetok_cli("decode", ids, "--threads", threads)
        assert result.returncode == 1
        assert result.stderr.decode().startswith(
            f"bpetok: error: {ids}:25001: token id 99999 is out of range"
        )
        written = result.stdout.decode().splitlines()
        assert len(written) == 25_000, threads
        assert json.loads(written[-1])["text"] == "record 24999"
