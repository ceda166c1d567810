"""Peak memory of `bpetok pack`, against the bounds stated in ``docs/resource-bounds.md``.

Each test runs ``python3 -m bpetok pack`` in a fresh child and compares its peak RSS (``wait4``'s
``ru_maxrss``) with a formula of the pack's options and of what its output says it holds:

- fixed: ``FIXED`` (interpreter, bpetok, the tokenizer's tables, read and write buffers, encoder
  caches; about 31 MiB measured), plus the packer's arena ``pack_buffer * seq_len * 4`` bytes,
  plus the shard writer's sample index (8 bytes a sample, for the shard being filled and the one
  being written; its tokens and segment rows are written as they come) and write buffers, plus
  the pipeline's batches in flight;
- a huge document, which is held whole: its JSONL line ``J``, its text ``T``, and the larger of a
  second ``T`` (the JSON string unescaped, then copied) and its ids (``4 N`` bytes for ``N``
  tokens).

The bounds are tight enough that one more copy of the document, or per-document memory kept for
a million documents, exceeds them. Sizes: a 150 MB document and a million tiny ones, each run in
a few seconds (``BPETOK_MEMORY_DOC_MB`` changes the document's size).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

MB = 1_000_000
MIB = 1 << 20
FIXED = 64 * MIB
"""Everything that does not depend on the input or the options (measured: about 31 MiB)."""
WRITE_BUFFERS = 4 * MIB
"""The writer's buffered tokens and segments files, for the shard being filled and one more."""
BATCH_BYTES = 256 << 10  # rust/bpetok/src/data/pipeline.rs
BATCH_DOCUMENTS = 4096
MAX_IN_FLIGHT = 16
DOCUMENT_OVERHEAD = 160
"""Bytes a document in flight costs besides its text: its String and ids headers and heap blocks."""
IN_FLIGHT = MAX_IN_FLIGHT * (BATCH_BYTES + BATCH_DOCUMENTS * DOCUMENT_OVERHEAD)
TIMEOUT = 300

# Forks and execs the pack, and prints its peak RSS. A pack started straight from pytest (vfork
# and exec) would report pytest's own peak if larger: Linux carries it over exec.
LAUNCHER = """
import json, os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"peak": usage.ru_maxrss * 1024, "exit": os.waitstatus_to_exitcode(status)}))
"""

TEXT = (
    "Packing writes fixed-length samples; a document longer than a sample is cut into chunks, "
    'each after the first repeating the window\'s worth of context.\n\tdef f(x):\n\t\treturn "x" * 2\n'
    "Les données sont découpées en morceaux — 日本語の文章も同じです。\n"
)


def pack_peak(inputs: Path, out: Path, *options: str) -> tuple[int, dict[str, Any]]:
    """The peak RSS in bytes of `bpetok pack inputs -o out options...`, and its manifest."""
    cmd = [sys.executable, "-m", "bpetok", "pack", str(inputs), "-o", str(out), "--quiet", *options]
    run = subprocess.run(
        [sys.executable, "-S", "-c", LAUNCHER, *cmd], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["exit"] == 0, run.stderr
    return result["peak"], json.loads((out / "manifest.json").read_text())


def writer_memory(manifest: dict[str, Any]) -> int:
    """What the writer holds at most: the sample index of the shard being filled and of the one
    being written, and its write buffers."""
    return 2 * 8 * (manifest["options"]["samples_per_shard"] + 1) + WRITE_BUFFERS


def packer_arena(manifest: dict[str, Any]) -> int:
    return manifest["options"]["pack_buffer"] * manifest["options"]["seq_len"] * 4


def fits(peak: int, bound: int, parts: dict[str, int]) -> str:
    return f"peak RSS {peak / MIB:.1f} MiB, bound {bound / MIB:.1f} MiB = " + " + ".join(
        f"{name} {value / MIB:.1f}" for name, value in parts.items()
    )


@pytest.fixture(scope="module")
def huge(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A JSONL file of one document of BPETOK_MEMORY_DOC_MB (150) MB of text, then ordinary ones,
    as in a real corpus. Returns the path and the huge document's text bytes."""
    size = int(float(os.environ.get("BPETOK_MEMORY_DOC_MB", "150")) * MB)
    path = tmp_path_factory.mktemp("memory") / "huge.jsonl"
    rng = random.Random(0)
    words = TEXT.split(" ")
    base = " ".join(rng.choice(words) for _ in range(200_000))  # about 2 MB, not one repeated line
    piece = json.dumps(base, ensure_ascii=False)[1:-1]
    piece_bytes = len(base.encode("utf-8"))
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"text": "')
        while written + piece_bytes <= size:
            f.write(piece)
            written += piece_bytes
        f.write('"}\n')
        # Then 8 MB of ordinary documents: more than the batches in flight hold, so the reader is
        # still reading (and holding its line buffer) while the huge document is encoded.
        small = json.dumps({"text": base[:1000]}, ensure_ascii=False) + "\n"
        f.write(small * 8000)
    return path, written


@pytest.mark.parametrize("threads", [1, 2])
def test_huge_document(huge: tuple[Path, int], tmp_path: Path, threads: int) -> None:
    path, text_bytes = huge
    peak, manifest = pack_peak(
        path,
        tmp_path / "out",
        *("--seq-len", "4096", "--window", "1024", "--pack-buffer", "256", "--threads", str(threads)),
    )
    tokens = manifest["totals"]["document_tokens"]
    parts = {
        "fixed": FIXED,
        "packer": packer_arena(manifest),
        "writer": writer_memory(manifest),
        "in flight": IN_FLIGHT,
        "JSONL line": path.stat().st_size,  # the huge line, and the small ones (8 MB) as slack
        "text": text_bytes,
        "max(text, ids)": max(text_bytes, 4 * tokens),
    }
    bound = sum(parts.values())
    print(fits(peak, bound, parts))  # shown with pytest -s or -rP: the figures of this machine
    assert peak <= bound, fits(peak, bound, parts)
    # The document is held about three times (line, text, ids), not more: well below four texts.
    assert peak - FIXED < 4 * text_bytes, fits(peak, bound, parts)


def write_tiny(path: Path, count: int, empty: bool) -> None:
    """`count` documents of one to six words (about 16 bytes of JSON each), a third of them empty;
    or all of them empty."""
    rng = random.Random(1)
    words = ["a", "the", "of", "data", "tiny", "x", "é", "日本"]
    lines = [
        json.dumps({"text": "" if empty or k % 3 == 0 else " ".join(rng.choices(words, k=rng.randint(1, 6)))})
        + "\n"
        for k in range(3000)
    ]
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, count, len(lines)):
            f.write("".join(lines[: min(len(lines), count - start)]))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("corpus", ["tiny", "empty"])
def test_a_million_tiny_documents(tmp_path: Path, threads: int, corpus: str) -> None:
    """A million documents cost the buffers only: nothing is kept per document beyond the shard
    being written, and a batch in flight holds at most BATCH_DOCUMENTS documents however short
    they are (a million empty ones were once a single batch)."""
    path = tmp_path / "tiny.jsonl"
    write_tiny(path, 1_000_000, empty=corpus == "empty")
    peak, manifest = pack_peak(
        path,
        tmp_path / "out",
        *("--seq-len", "2048", "--window", "0", "--pack-buffer", "256"),
        *("--samples-per-shard", "256", "--threads", str(threads)),
    )
    assert manifest["totals"]["documents"] == 1_000_000
    assert len(manifest["shards"]) > 4  # the writer's memory is per shard, not per corpus
    parts = {
        "fixed": FIXED,
        "packer": packer_arena(manifest),
        "writer": writer_memory(manifest),
        "in flight": IN_FLIGHT,
    }
    bound = sum(parts.values())
    print(fits(peak, bound, parts))  # shown with pytest -s or -rP: the figures of this machine
    assert peak <= bound, fits(peak, bound, parts)
