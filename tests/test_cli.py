"""The ``bpetok`` command line, run as ``python -m bpetok`` in subprocesses."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import bpetok
import pytest
from bpetok.megatron import MegatronDataset

ROOT = Path(__file__).resolve().parent.parent
DOCS = [
    "Hello world",
    "",
    "  leading spaces and a trailing newline\n",
    "日本語のテキストです。 🙂 emoji",
    "def f(x):\n    return x + 1\n",
    "a" * 3000,
] + [f"document {i}: " + "lorem ipsum dolor sit amet " * (i % 40) for i in range(300)]


def bpetok_cli(
    *args: str | Path, stdin: bytes | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "bpetok", *map(str, args)],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        timeout=120,
    )


def ok(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    result = bpetok_cli(*args, stdin=stdin)
    assert result.returncode == 0, result.stderr.decode()
    return result


def write_jsonl(path: Path, docs: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    return path


def ids_of(output: bytes) -> list[list[int]]:
    return [json.loads(line)["ids"] for line in output.decode().splitlines()]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "docs.jsonl", DOCS)


# ---- encode ----------------------------------------------------------------------------------


def test_encode_gives_the_ids_of_bpetok_encode(corpus: Path) -> None:
    result = ok("encode", corpus)
    assert ids_of(result.stdout) == [bpetok.encode(d) for d in DOCS]
    assert result.stdout.startswith(b'{"ids": [22557,1526]}\n')


def test_encode_bos_eos(corpus: Path) -> None:
    result = ok("encode", "--bos", "--eos", corpus)
    assert ids_of(result.stdout) == [bpetok.encode(d, add_bos=True, add_eos=True) for d in DOCS]
    result = ok("encode", "--bos", "--no-bos", corpus)
    assert ids_of(result.stdout) == [bpetok.encode(d) for d in DOCS]


def test_encode_output_does_not_depend_on_threads(corpus: Path, tmp_path: Path) -> None:
    ok("--threads", "1", "encode", corpus, "-o", tmp_path / "one.jsonl")
    ok("encode", "--threads", "2", corpus, "-o", tmp_path / "two.jsonl")
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "two.jsonl").read_bytes()
    for threads in ("1", "2"):
        ok("encode", "--threads", threads, "--format", "megatron", corpus, "-o", tmp_path / f"m{threads}")
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"m1{ext}").read_bytes() == (tmp_path / f"m2{ext}").read_bytes()


def test_one_huge_document_on_two_threads(tmp_path: Path) -> None:
    """A document over 1 MiB is encoded on every thread (cut where no merge can cross): same ids."""
    words = ["alpha ", "beta\n", "数据获取一个", "日本語の ", "    x = f(y)\n", "😀 "]
    huge = "".join(words[(i * 7919) % len(words)] for i in range(300_000))
    path = write_jsonl(tmp_path / "huge.jsonl", ["before", huge, "after"])
    for threads in ("1", "2"):
        ok("encode", "--threads", threads, path, "-o", tmp_path / f"{threads}.jsonl")
    assert (tmp_path / "1.jsonl").read_bytes() == (tmp_path / "2.jsonl").read_bytes()
    assert ids_of((tmp_path / "2.jsonl").read_bytes())[1] == bpetok.encode(huge)


def test_encode_text_files_stdin_and_directories(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "b.txt").write_text("second file\n")
    (tmp_path / "d" / "sub" / "a.txt.gz").write_bytes(gzip.compress(b"first file"))
    (tmp_path / "d" / "lines.txt").write_text("x y\n\nz\n")
    result = ok("encode", tmp_path / "d")
    expected = ["second file\n", "x y\n\nz\n", "first file"]  # b.txt, lines.txt, sub/a.txt.gz
    assert ids_of(result.stdout) == [bpetok.encode(t) for t in expected]
    result = ok("encode", "--lines", tmp_path / "d" / "lines.txt")
    assert ids_of(result.stdout) == [bpetok.encode("x y"), bpetok.encode("z")]
    result = ok("encode", "-", stdin=b'{"text": "from stdin"}\n')
    assert ids_of(result.stdout) == [bpetok.encode("from stdin")]
    result = ok("encode", "--input-format", "text", "-", stdin=gzip.compress(b"gz on stdin"))
    assert ids_of(result.stdout) == [bpetok.encode("gz on stdin")]


def test_encode_with_a_vocab_file(corpus: Path, tmp_path: Path) -> None:
    model = tmp_path / "tokenizer.model"
    model.write_bytes(bpetok.Tokenizer.default().model_bytes)
    assert ok("--vocab", model, "encode", corpus).stdout == ok("encode", corpus).stdout
    result = bpetok_cli("encode", "--vocab", tmp_path / "missing.model", corpus)
    assert result.returncode == 1
    assert result.stderr.decode().startswith(f"bpetok: error: {tmp_path / 'missing.model'}: ")
    (tmp_path / "junk.model").write_bytes(b"not a model")
    result = bpetok_cli("encode", "--vocab", tmp_path / "junk.model", corpus)
    assert result.returncode == 1 and b"Traceback" not in result.stderr


def test_encode_megatron(corpus: Path, tmp_path: Path) -> None:
    ok("encode", "--format", "megatron", "--eos", corpus, "-o", tmp_path / "mm")
    ds = MegatronDataset(tmp_path / "mm")
    assert ds.dtype.itemsize == 2
    assert [x.tolist() for x in ds] == [bpetok.encode(d, add_eos=True) for d in DOCS]
    assert ds.document_indices.tolist() == list(range(len(DOCS) + 1))


@pytest.mark.parametrize("fmt", ["jsonl", "megatron"])
def test_encode_mixed_inputs_in_order(tmp_path: Path, fmt: str) -> None:
    """JSONL and text are read in Rust, Parquet in Python: the output is in input order either way."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jsonl").write_text(
        "".join(json.dumps({"text": d}) + "\n" for d in DOCS[:100]), encoding="utf-8"
    )
    pq.write_table(pa.table({"text": DOCS[100:200]}), src / "b.parquet")
    with gzip.open(src / "c.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": d}) + "\n" for d in DOCS[200:])
    want = [bpetok.encode(d, add_bos=True) for d in DOCS]
    if fmt == "jsonl":
        ok("encode", "--bos", src, "-o", tmp_path / "ids.jsonl")
        got = [json.loads(line)["ids"] for line in (tmp_path / "ids.jsonl").read_text().splitlines()]
    else:
        ok("encode", "--bos", "--format", "megatron", src, "-o", tmp_path / "mm")
        got = [x.tolist() for x in MegatronDataset(tmp_path / "mm")]
    assert got == want


# ---- decode ----------------------------------------------------------------------------------


def test_decode_round_trip(corpus: Path, tmp_path: Path) -> None:
    ok("encode", corpus, "-o", tmp_path / "ids.jsonl")
    result = ok("decode", tmp_path / "ids.jsonl")
    assert [json.loads(line)["text"] for line in result.stdout.decode().splitlines()] == DOCS
    # and through stdin, to a file
    ok("decode", "-", "-o", tmp_path / "text.jsonl", stdin=(tmp_path / "ids.jsonl").read_bytes())
    assert (tmp_path / "text.jsonl").read_bytes() == result.stdout
    # its output is encode's input
    again = ok("encode", tmp_path / "text.jsonl")
    assert again.stdout == (tmp_path / "ids.jsonl").read_bytes()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"ids": [1, 99999]}', "token id 99999 is out of range"),
        (b'{"ids": [1, "x"]}', 'token ids must be integers, found "x"'),
        (b'{"ids": [1, true]}', "token ids must be integers, found true"),
        (b'{"tokens": [1]}', "record has no field 'ids'"),
        (b'{"ids": 5}', "field 'ids' is not a list of token ids"),
    ],
)
def test_decode_errors(tmp_path: Path, line: bytes, message: str) -> None:
    path = tmp_path / "ids.jsonl"
    path.write_bytes(b'{"ids": [22557]}\n' + line + b"\n")
    result = bpetok_cli("decode", path, "-o", tmp_path / "out.jsonl")
    assert result.returncode == 1
    assert result.stderr.decode().startswith(f"bpetok: error: {path}:2: {message}")
    assert not (tmp_path / "out.jsonl").exists()


# ---- summary, quiet, streams -----------------------------------------------------------------


def test_json_summary(corpus: Path, tmp_path: Path) -> None:
    result = ok("encode", corpus, "-o", tmp_path / "ids.jsonl", "--json")
    summary = json.loads(result.stdout)
    assert summary["command"] == "encode"
    assert summary["documents"] == len(DOCS)
    assert summary["tokens"] == sum(len(bpetok.encode(d)) for d in DOCS)
    assert summary["input_bytes"] == corpus.stat().st_size
    assert summary["output"] == str(tmp_path / "ids.jsonl")
    assert result.stderr == b""
    # With the output on stdout, the JSON summary goes to stderr.
    result = ok("--json", "encode", corpus)
    assert len(ids_of(result.stdout)) == len(DOCS)
    assert json.loads(result.stderr)["documents"] == len(DOCS)


def test_summary_on_stderr_and_quiet(corpus: Path, tmp_path: Path) -> None:
    result = ok("encode", corpus, "-o", tmp_path / "ids.jsonl")
    assert result.stdout == b""
    # not a terminal: no progress bar, only the summary line
    assert result.stderr.decode().startswith(f"bpetok encode: {len(DOCS)} documents, ")
    assert result.stderr.count(b"\n") == 1
    result = ok("encode", "--quiet", corpus, "-o", tmp_path / "ids.jsonl")
    assert result.stdout == result.stderr == b""


# ---- errors and exit codes -------------------------------------------------------------------


def test_data_errors_exit_1_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"text": "fine"}\n{"text": 3}\n')
    result = bpetok_cli("encode", bad)
    assert result.returncode == 1
    assert result.stderr.decode() == f"bpetok: error: {bad}:2: field 'text' is a number, not a string\n"
    bad.write_bytes(b'{"text": "fine"}\n\n{"text": "\\ud800 lone"}\n')
    result = bpetok_cli("encode", bad)
    assert result.returncode == 1
    assert result.stderr.decode().startswith(f"bpetok: error: {bad}:3: lone surrogate U+D800")
    result = ok("encode", "--errors", "replace", bad)
    assert ids_of(result.stdout) == [bpetok.encode("fine"), bpetok.encode("\ufffd lone")]
    result = bpetok_cli("encode", tmp_path / "missing.jsonl")
    assert result.returncode == 1
    assert (
        result.stderr.decode() == f"bpetok: error: {tmp_path / 'missing.jsonl'}: no such file or directory\n"
    )


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["encode"],
        ["frobnicate", "x"],
        ["encode", "--threads", "0", "x.jsonl"],
        ["encode", "--format", "megatron", "x.jsonl"],
        ["encode", "--format", "megatron", "x.jsonl", "-o", "out.bin"],
        ["encode", "--errors", "ignore", "x.jsonl"],
    ],
)
def test_usage_errors_exit_2(args: list[str], tmp_path: Path) -> None:
    write_jsonl(tmp_path / "x.jsonl", ["a"])
    result = bpetok_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert b"usage: bpetok" in result.stderr and b"error: " in result.stderr
    assert b"Traceback" not in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["x.jsonl"]


@pytest.mark.parametrize("fmt", ["jsonl", "megatron"])
def test_no_partial_output_after_a_failure(tmp_path: Path, fmt: str) -> None:
    # Enough good documents that several batches are written before the bad record.
    good = "".join(json.dumps({"text": "word " * 2000}) + "\n" for _ in range(1500))
    bad = tmp_path / "in.jsonl"
    bad.write_text(good + '{"text": "fine"}\n{"oops": 1}\n')
    out = tmp_path / "out" / "result"
    out.parent.mkdir()
    result = bpetok_cli("encode", "--format", fmt, bad, "-o", out)
    assert result.returncode == 1, result.stderr
    assert result.stderr.decode().startswith(f"bpetok: error: {bad}:1502: record has no field 'text'")
    assert os.listdir(out.parent) == []
    # An existing output stays as it was.
    out.write_bytes(b"old")
    assert bpetok_cli("encode", bad, "-o", out).returncode == 1
    assert os.listdir(out.parent) == ["result"] and out.read_bytes() == b"old"


def _sigint_default() -> None:
    """In the child: Ctrl-C as a terminal delivers it, even when this test runs in a background
    job of a non-interactive shell (which starts its children with SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_interrupt_leaves_no_output(tmp_path: Path) -> None:
    out = tmp_path / "ids.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bpetok", "encode", "-", "-o", str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_sigint_default,
    )
    assert proc.stdin is not None
    proc.stdin.write(b'{"text": "some text"}\n')
    proc.stdin.flush()
    deadline = time.monotonic() + 30
    while not os.listdir(tmp_path):  # the temporary output appears once inputs are open
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert stderr.decode().strip() == "bpetok: interrupted"
    assert os.listdir(tmp_path) == []


def test_console_script_is_declared() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["scripts"]["bpetok"] == "bpetok.cli:main"
    # Reading (gzip, zstd, Parquet) is the Rust core's: no Python reader dependencies.
    assert sorted(d.split(">")[0] for d in project["dependencies"]) == ["numpy", "tqdm"]
    from bpetok.cli import main

    assert callable(main)
    assert ok("--version").stdout.decode() == f"bpetok {bpetok.__version__}\n"
