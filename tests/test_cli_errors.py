"""What a new user tripped over, each pinned: one-line errors instead of tracebacks, options
bounded, the tokenizer of shards checked, padding and context shown, no leftovers after a failure,
and the smaller surprises of directories, empty files and messages."""

from __future__ import annotations

import gzip
import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import bpetok
import pytest
import zstandard
from conftest import MODEL_FILES

PACK_ARGS = ("--seq-len", "64", "--window", "16")
WORDS = "the quick brown fox jumps over a lazy dog".split()


def cli(*args: str | Path, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bpetok", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def one_error_line(result: subprocess.CompletedProcess[str], status: int = 1) -> str:
    """The run failed with ``status`` and printed exactly one ``bpetok: error:`` line."""
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bpetok: error: "), result.stderr
    return lines[0].removeprefix("bpetok: error: ")


def write_jsonl(path: Path, docs: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    return path


def long_docs(n: int, words: int) -> list[str]:
    return [" ".join(WORDS[(i + k) % len(WORDS)] for k in range(words)) for i in range(n)]


# ---- encode: one line, exit 1, no partial output ---------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "megatron"])
def test_encode_invalid_utf8_is_one_line_and_leaves_no_output(tmp_path: Path, fmt: str) -> None:
    bad = tmp_path / "bad.jsonl"
    good = "".join(json.dumps({"text": "word " * 500}) + "\n" for _ in range(3000))
    bad.write_bytes(good.encode() + b'{"text": "caf\xe9"}\n')
    out = tmp_path / "out" / "ids"
    out.parent.mkdir()
    message = one_error_line(cli("encode", "--format", fmt, bad, "-o", out))
    assert message == (
        f"{bad}:3001: invalid UTF-8 (byte 0xe9 at column 14); "
        "pass --errors replace to read invalid bytes as U+FFFD"
    )
    assert os.listdir(out.parent) == []


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst"])
def test_encode_truncated_compressed_input_is_one_line(tmp_path: Path, suffix: str) -> None:
    data = "".join(json.dumps({"text": f"document {i} " * 50}) + "\n" for i in range(2000)).encode()
    packed = gzip.compress(data) if suffix.endswith(".gz") else zstandard.ZstdCompressor().compress(data)
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(packed[: len(packed) // 2])
    message = one_error_line(cli("encode", path, "-o", tmp_path / "ids.jsonl"))
    assert message.startswith(f"{path}:")
    assert "cannot read" in message
    assert sorted(os.listdir(tmp_path)) == [path.name]


# ---- bounded options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "flag"),
    [
        ("--seq-len", "1000000000", "--seq-len"),
        ("--seq-len", str(2**70), "--seq-len"),
        ("--window", str(2**40), "--window"),
        ("--pad-id", "99999", "--pad-id"),
        ("--samples-per-shard", str(2**30), "--samples-per-shard"),
        ("--pack-buffer", str(2**30), "--pack-buffer"),
        ("--overlap", "4096", "--overlap"),
    ],
)
def test_out_of_bounds_options_are_refused_at_once(
    tmp_path: Path, option: str, value: str, flag: str
) -> None:
    inputs = write_jsonl(tmp_path / "in.jsonl", long_docs(20, 30))
    args = {"--seq-len": "4096", "--window": "1024", option: value}
    flat = [x for kv in args.items() for x in kv]
    start = time.monotonic()
    result = cli("pack", inputs, "-o", tmp_path / "out", *flat)
    assert time.monotonic() - start < 30
    message = one_error_line(result)
    assert message.startswith(f"{flag}: "), message
    assert value in message or "large" in message or "more than" in message
    for api_word in ("seq_len", "pad_id", "samples_per_shard", "pack_buffer", "set overwrite"):
        assert api_word not in message
    assert not (tmp_path / "out").exists()


# ---- the tokenizer of shards ---------------------------------------------------------------------


@pytest.fixture
def v3_shards(tmp_path: Path) -> Path:
    model = MODEL_FILES["v3"]
    if not model.exists():
        pytest.skip("../shared/vocab is not beside the repository")
    inputs = write_jsonl(tmp_path / "in.jsonl", ["Hello world, " * 20, "日本語のテキスト"])
    out = tmp_path / "v3"
    result = cli("pack", inputs, "-o", out, "--seq-len", "64", "--window", "16", "--vocab", model, "--quiet")
    assert result.returncode == 0, result.stderr
    return out


def test_inspect_show_with_another_tokenizer_is_an_error(v3_shards: Path) -> None:
    v3 = bpetok.Tokenizer.from_file(MODEL_FILES["v3"])
    default = bpetok.Tokenizer.default()
    message = one_error_line(cli("inspect", v3_shards, "--show", "0"))
    assert v3.sha256[:12] in message and default.sha256[:12] in message
    assert "--vocab" in message
    shown = cli("inspect", v3_shards, "--show", "0", "--vocab", MODEL_FILES["v3"])
    assert shown.returncode == 0 and "Hello world" in shown.stdout


def test_verify_with_vocab_checks_the_tokenizer(v3_shards: Path) -> None:
    assert cli("verify", v3_shards).returncode == 0
    assert cli("verify", v3_shards, "--vocab", MODEL_FILES["v3"]).returncode == 0
    wrong = cli("verify", v3_shards, "--vocab", MODEL_FILES["mixtral-8x7b"])
    assert wrong.returncode == 1
    assert "tokenizer" in wrong.stderr and "Traceback" not in wrong.stderr
    assert not bpetok.verify(v3_shards, tokenizer=bpetok.Tokenizer.default()).ok


def test_show_sample_api_refuses_another_tokenizer(v3_shards: Path) -> None:
    with pytest.raises(bpetok.ShardError) as caught:
        bpetok.show_sample(v3_shards, 0)
    assert caught.value.kind == "tokenizer_mismatch"
    sample = bpetok.show_sample(v3_shards, 0, tokenizer=bpetok.Tokenizer.from_file(MODEL_FILES["v3"]))
    assert sample["index"] == 0 and sample["segments"]


# ---- progress bar on a terminal ----------------------------------------------------------------


def _screen_lines(output: bytes) -> list[str]:
    """What stays visible of each line a terminal was sent: the text after its last carriage
    return, trailing spaces cut (tqdm clears a bar by overwriting it with spaces)."""
    text = output.decode(errors="replace").replace("\r\n", "\n")
    return [line.split("\r")[-1].rstrip() for line in text.split("\n")]


def _run_on_a_terminal(argv: list[str]) -> tuple[int, bytes]:
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bpetok", *argv], stderr=terminal, stdout=subprocess.DEVNULL
        )
        os.close(terminal)
        terminal = -1
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 1 << 16)
            except OSError:  # the other side is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        status = proc.wait(timeout=120)
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    return status, b"".join(chunks)


@pytest.mark.parametrize("documents", [50, 150_000])
def test_no_progress_bar_is_left_on_a_terminal(tmp_path: Path, documents: int) -> None:
    """A short run draws no bar; a longer one removes its bar, line and all, before the summary:
    the terminal shows the summary line and nothing else."""
    inputs = write_jsonl(tmp_path / "in.jsonl", long_docs(documents, 100))
    argv = ["pack", str(inputs), "-o", str(tmp_path / "out"), "--threads", "1", *PACK_ARGS]
    status, output = _run_on_a_terminal(argv)
    assert status == 0, output
    *shown, last = _screen_lines(output)
    assert last == "" and len(shown) == 1, shown
    assert shown[0].startswith(f"bpetok pack: {documents:,} documents"), shown


# ---- the pack summary: padding and context ---------------------------------------------------------


def test_pack_summary_shows_padding_and_context_and_warns(tmp_path: Path) -> None:
    inputs = write_jsonl(tmp_path / "long.jsonl", long_docs(30, 400))
    result = cli("pack", inputs, "-o", tmp_path / "out", "--seq-len", "128", "--window", "64")
    assert result.returncode == 0, result.stderr
    summary, *warnings = result.stderr.splitlines()
    assert "padding " in summary and "context " in summary
    assert any(w.startswith("bpetok: warning: ") and "--overlap" in w for w in warnings), result.stderr
    data = json.loads(
        cli("pack", inputs, "-o", tmp_path / "o2", "--seq-len", "128", "--window", "64", "--json").stdout
    )
    assert data["context_share"] > 0.25
    assert data["context_share"] == pytest.approx(data["context_tokens"] / (data["samples"] * 128), abs=1e-6)
    assert data["padding_share"] == pytest.approx(data["padding_tokens"] / (data["samples"] * 128), abs=1e-6)
    # No context at all with full attention and short documents: no warning.
    short = write_jsonl(tmp_path / "short.jsonl", long_docs(30, 5))
    quiet = cli("pack", short, "-o", tmp_path / "o3", "--seq-len", "64", "--window", "0")
    assert "warning" not in quiet.stderr and "context 0.0%" in quiet.stderr


# ---- messages in the command line's words --------------------------------------------------------


def test_existing_output_names_the_overwrite_flag(tmp_path: Path) -> None:
    inputs = write_jsonl(tmp_path / "in.jsonl", ["a b c"])
    args = ["pack", inputs, "-o", tmp_path / "out", "--seq-len", "16", "--window", "4", "--quiet"]
    assert cli(*args).returncode == 0
    message = one_error_line(cli(*args))
    assert "--overwrite" in message and "set overwrite" not in message


def test_output_naming_a_file_says_so(tmp_path: Path) -> None:
    inputs = write_jsonl(tmp_path / "in.jsonl", ["a b c"])
    target = tmp_path / "afile"
    target.write_text("keep me")
    message = one_error_line(cli("pack", inputs, "-o", target, "--seq-len", "16", "--window", "4"))
    assert str(target) in message and "not a directory" in message
    assert "os error" not in message
    assert target.read_text() == "keep me"


def test_inspect_show_out_of_range_is_one_line(tmp_path: Path) -> None:
    inputs = write_jsonl(tmp_path / "in.jsonl", ["a b c"])
    assert cli("pack", inputs, "-o", tmp_path / "out", "--seq-len", "16", "--window", "4").returncode == 0
    message = one_error_line(cli("inspect", tmp_path / "out", "--show", "5"))
    assert message.startswith("--show 5: ") and message.endswith(" has 1 sample")
    assert "usage:" not in message


def test_singular_counts() -> None:
    from bpetok.cli._common import plural

    assert plural(1, "document") == "1 document"
    assert plural(2, "violation") == "2 violations"
    assert plural(1234, "token") == "1,234 tokens"


def test_one_document_summary_is_singular(tmp_path: Path) -> None:
    inputs = write_jsonl(tmp_path / "in.jsonl", ["a b c"])
    result = cli("encode", inputs, "-o", tmp_path / "ids.jsonl")
    assert result.stderr.startswith("bpetok encode: 1 document, ")


def test_verify_counts_one_violation_in_the_singular(tmp_path: Path) -> None:
    inputs = write_jsonl(tmp_path / "in.jsonl", ["a b c"] * 3)
    out = tmp_path / "out"
    assert cli("pack", inputs, "-o", out, "--seq-len", "16", "--window", "4").returncode == 0
    (out / "shard-00000.sample_index.npy").unlink()
    result = cli("verify", out)
    assert result.returncode == 1
    report = bpetok.verify(out)
    n = len(report.violations)
    assert report.summary == (f"{n} violation found" if n == 1 else f"{n} violations found")
    assert f"FAILED: {report.summary}" in result.stderr


# ---- directories, empty files, empty inputs, failed runs -------------------------------------------


def test_directory_with_a_forced_text_format_reads_every_file(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("first document\n")
    (docs / "b.rst").write_text("second document\n")
    (docs / ".hidden.md").write_text("not read\n")
    result = cli("encode", docs, "--input-format", "text", "-o", tmp_path / "ids.jsonl")
    assert result.returncode == 0, result.stderr
    ids = [json.loads(line)["ids"] for line in (tmp_path / "ids.jsonl").read_text().splitlines()]
    assert ids == [bpetok.encode("first document\n"), bpetok.encode("second document\n")]


def test_failed_run_removes_the_output_directory_it_created(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"oops": 1}\n')
    out = tmp_path / "new" / "shards"
    result = cli("pack", bad, "-o", out, "--seq-len", "16", "--window", "4")
    assert one_error_line(result).startswith(f"{bad}:2: record has no field 'text'")
    assert not out.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    result = cli("pack", bad, "-o", kept, "--seq-len", "16", "--window", "4")
    assert result.returncode == 1 and kept.is_dir()  # it existed before: it stays


def test_empty_text_file_is_no_document(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "full.txt").write_text("some text")
    result = cli("encode", tmp_path / "empty.txt", tmp_path / "full.txt", "-o", tmp_path / "ids.jsonl")
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "ids.jsonl").read_text().splitlines()
    assert [json.loads(line)["ids"] for line in lines] == [bpetok.encode("some text")]


def test_empty_input_set_warns(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    result = cli("pack", tmp_path / "empty.txt", "-o", tmp_path / "out", "--seq-len", "16", "--window", "4")
    assert result.returncode == 0
    assert "bpetok: warning: the inputs hold no documents" in result.stderr


# ---- the package's surface -------------------------------------------------------------------------


def test_dir_lists_only_the_public_api() -> None:
    names = set(dir(bpetok))
    for private in ("Any", "os", "threading", "TYPE_CHECKING", "Iterable", "Sequence"):
        assert private not in names
    for public in ("pack", "encode_files", "decode_files", "verify", "inspect", "Tokenizer", "BpetokError"):
        assert public in names
    assert set(bpetok.__all__) <= names
