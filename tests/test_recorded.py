"""Recorded outputs: the command line writes exactly these bytes for these inputs and options.

``tests/data/recorded/`` holds a small corpus (JSONL, text, Parquet, gzip and zstd, a directory,
a text file with invalid UTF-8) and ``expected.json``, the sha256 of every file that each command
below wrote when it was recorded. A restructuring of the data path must leave every one of them
unchanged: shards, manifests, encode's JSONL and Megatron files, decode's text. A deliberate change
of output format re-records them (and says so in its commit).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pyarrow")  # the corpus has a Parquet file

HERE = Path(__file__).parent / "data" / "recorded"

CASES: dict[str, str] = {
    "pack-dir-1t": "pack corpus -o {out}/p1 --seq-len 256 --window 128 --samples-per-shard 16 --threads 1",
    "pack-dir-2t": "pack corpus -o {out}/p2 --seq-len 256 --window 128 --samples-per-shard 16 --threads 2",
    "pack-lines": "pack lines.txt corpus/b.txt --lines --errors replace -o {out}/p3 --seq-len 64 --window 0 "
    "--no-bos --pack-buffer 7 --seed 3 --pad-id 5",
    "pack-overlap": "pack corpus/a.jsonl -o {out}/p4 --seq-len 512 --window 4096 --overlap 100 --no-eos",
    "encode-jsonl": "encode corpus -o {out}/e1.jsonl --bos",
    "encode-megatron": "encode corpus --format megatron --eos -o {out}/e2",
    "encode-lines": "encode lines.txt --lines --errors replace -o {out}/e3.jsonl",
    "decode": "decode {out}/e1.jsonl -o {out}/d1.jsonl",
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_recorded_outputs_are_unchanged(tmp_path: Path) -> None:
    expected = json.loads((HERE / "expected.json").read_text())
    env = {**os.environ, "COLUMNS": "80"}
    for name, argv in CASES.items():
        args = [a.format(out=tmp_path) for a in argv.split()]
        run = subprocess.run(
            [sys.executable, "-m", "bpetok", *args, "--quiet"],
            cwd=HERE,
            env=env,
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, (name, run.stderr)
    written = {str(p.relative_to(tmp_path)): _sha256(p) for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    assert sorted(written) == sorted(expected)
    changed = sorted(k for k in expected if written[k] != expected[k])
    assert not changed, f"outputs differ from the recording: {changed}"
