"""The bad-input policy: with ``--skip-bad-records`` (``skip_bad_records=True``) a JSONL line
that is not JSON, not an object, lacks the field or holds a non-string there, and a Parquet null,
is counted per input (in the manifest and the summary) instead of stopping the run; without it,
the first one stops the run with its one-line error. Invalid UTF-8 keeps ``--errors``, and
``replace`` gives exactly the ids ``sentencepiece`` gives for the same bytes decoded with
Python's ``errors="replace"``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import bpetok
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

GOOD = [json.dumps({"text": f"document number {i}"}) for i in range(5)]
BAD = ["{oops", '{"text": 5}', '{"body": "no text field"}', "[1, 2]", '"a string"', '{"text": null}']


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bpetok", *args], capture_output=True, text=True, timeout=120
    )


def test_skip_bad_records_counts_them_per_input(tmp_path: Path) -> None:
    a = write_lines(tmp_path / "a.jsonl", [GOOD[0], BAD[0], GOOD[1], "", BAD[1], BAD[2], GOOD[2]])
    b = write_lines(tmp_path / "b.jsonl", [BAD[3], BAD[4], BAD[5], GOOD[3], GOOD[4]])
    c = write_lines(tmp_path / "c.jsonl", GOOD)
    out = tmp_path / "out"
    result = cli(
        "pack",
        str(a),
        str(b),
        str(c),
        "-o",
        str(out),
        "--seq-len",
        "64",
        "--window",
        "0",
        "--skip-bad-records",
    )
    assert result.returncode == 0, result.stderr
    assert "6 bad records skipped" in result.stderr, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["input"]["skip_bad_records"] is True
    assert [(i["documents"], i["skipped_records"]) for i in manifest["inputs"]] == [(3, 3), (2, 3), (5, 0)]
    assert manifest["totals"]["documents"] == 10
    assert bpetok.verify(out).ok
    # The documents are the good lines, in order: the same as packing only those.
    clean = write_lines(tmp_path / "clean.jsonl", [GOOD[0], GOOD[1], GOOD[2], GOOD[3], GOOD[4], *GOOD])
    reference = bpetok.pack(clean, tmp_path / "ref", seq_len=64, window=0)
    ours = bpetok.pack([a, b, c], tmp_path / "api", seq_len=64, window=0, skip_bad_records=True)
    assert ours.skipped_records == 6
    assert reference.skipped_records is None
    assert (tmp_path / "api" / "shard-00000.tokens.npy").read_bytes() == (
        tmp_path / "ref" / "shard-00000.tokens.npy"
    ).read_bytes()
    summary = json.loads(
        cli(
            "pack",
            str(a),
            "-o",
            str(tmp_path / "j"),
            "--seq-len",
            "64",
            "--window",
            "0",
            "--skip-bad-records",
            "--json",
        ).stdout
    )
    assert summary["skipped_records"] == 3


def test_without_skipping_the_first_bad_record_stops_the_run(tmp_path: Path) -> None:
    a = write_lines(tmp_path / "a.jsonl", [GOOD[0], BAD[1], BAD[0]])
    out = tmp_path / "out"
    result = cli("pack", str(a), "-o", str(out), "--seq-len", "64", "--window", "0")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"bpetok: error: {a}:2: field 'text' is a number, not a string"
    ], result.stderr
    assert not out.exists()
    # Without --skip-bad-records the manifest is what it always was (no new keys).
    write_lines(a, GOOD)
    assert cli("pack", str(a), "-o", str(out), "--seq-len", "64", "--window", "0").returncode == 0
    text = (out / "manifest.json").read_text()
    assert "skip_bad_records" not in text and "skipped_records" not in text


def test_invalid_utf8_is_not_a_bad_record(tmp_path: Path) -> None:
    a = tmp_path / "a.jsonl"
    a.write_bytes(b'{"text": "fine"}\n{"text": "bad \xff byte"}\n')
    result = cli(
        "pack", str(a), "-o", str(tmp_path / "out"), "--seq-len", "64", "--window", "0", "--skip-bad-records"
    )
    assert result.returncode == 1
    assert "invalid UTF-8" in result.stderr and "--errors replace" in result.stderr, result.stderr


@pytest.mark.parametrize("name", ["mixtral-8x7b", "v3"])
@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=200)
    | st.lists(
        st.sampled_from([b"a", b" ", b"\xff", b"\xe2\x82", b"\xf0\x9f", b"\xc3\xa9", b"\xed\xa0\x80", b"\n"])
    ).map(b"".join)
)
def test_errors_replace_gives_the_ids_sentencepiece_gives(
    name: str, data: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Arbitrary bytes as a text file, read with ``errors="replace"``: the ids are
    ``sentencepiece``'s for ``data.decode("utf-8", "replace")`` (each maximal invalid sequence one
    U+FFFD, as Python and Rust's ``from_utf8_lossy`` both replace)."""
    from conftest import get_vocab

    vocab = get_vocab(name)
    root = tmp_path_factory.mktemp("replace")
    path = root / "doc.txt"
    path.write_bytes(data)
    out = root / "ids.jsonl"
    bpetok.encode_files(path, out, errors="replace", input_format="text", tokenizer=vocab.tok)
    lines = out.read_text().splitlines()
    text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "replace")
    if not text:
        assert lines == []
        return
    assert [json.loads(line)["ids"] for line in lines] == [vocab.sp.encode(text)]
