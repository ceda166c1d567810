"""``bpetok pack --partition-size`` on text lines cut at awkward places: byte ranges of a file
share out its lines with none lost or read twice wherever the cuts fall (CRLF, a U+FEFF starting
a line, no final newline), every document's tokens are those of the unpartitioned run, grouping
of small files, gzip kept whole and Parquet cut by row groups, and ``verify`` catches damage to a
partitioned output. (Resume, refusals and overwrite: ``test_partition.py``.)"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import bpetok
import numpy as np
import pytest

WORDS = "the quick brown fox jumps over a lazy dog Größe 東京 😀".split()
PACK = ("--seq-len", "4096", "--window", "0", "--samples-per-shard", "16")


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "bpetok", *args], capture_output=True, text=True, timeout=300
    )
    if check:
        assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def documents(out: Path) -> list[list[int]]:
    """Every document's tokens, in input order: partition by partition, by doc_id (documents are
    shorter than a sample here, so each is one segment)."""
    manifest = json.loads((out / "manifest.json").read_text())
    dirs = [out / p["name"] for p in manifest["partitions"]] if "partitions" in manifest else [out]
    docs: list[list[int]] = []
    for directory in dirs:
        found: dict[int, list[int]] = {}
        ds = bpetok.ShardDataset(directory)
        for i in range(len(ds)):
            sample = ds[i]
            cu = sample["cu_seqlens"]
            for k, doc in enumerate(sample["doc_ids"]):
                if doc >= 0:
                    assert int(doc) not in found, f"document {doc} of {directory.name} twice"
                    found[int(doc)] = sample["input_ids"][cu[k] : cu[k + 1]].tolist()
        count = json.loads((directory / "manifest.json").read_text())["totals"]["documents"]
        assert sorted(found) == list(range(len(found)))
        docs += [found[d] for d in range(count) if d in found]
    return docs


def tree(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def tricky_lines(seed: int, n: int = 120) -> bytes:
    """Text lines with multi-byte characters, CRLF endings, empty lines, a U+FEFF starting a line
    in the middle, and no newline at the end."""
    rng = np.random.default_rng(seed)
    lines = ["\ufefffirst line after a BOM"]
    for i in range(n):
        kind = int(rng.integers(0, 6))
        text = f"{i} " + " ".join(rng.choice(WORDS, size=int(rng.integers(1, 30))))
        if kind == 0:
            text = ""
        elif kind == 1:
            text += "\r"
        elif kind == 2:
            text = "\ufeff" + text
        lines.append(text)
    return "\n".join(lines).encode("utf-8")


@pytest.mark.parametrize("size", [1, 7, 64, 333, 1000, 4096])
def test_byte_ranges_share_out_the_lines(tmp_path: Path, size: int) -> None:
    data = tricky_lines(size, n=120 if size >= 64 else 12)
    path = tmp_path / "lines.txt"
    path.write_bytes(data)
    cli("pack", str(path), "--lines", "-o", str(tmp_path / "whole"), "--quiet", *PACK)
    cli(
        "pack",
        str(path),
        "--lines",
        "-o",
        str(tmp_path / "parts"),
        "--quiet",
        "--partition-size",
        str(size),
        *PACK,
    )
    manifest = json.loads((tmp_path / "parts" / "manifest.json").read_text())
    whole = json.loads((tmp_path / "whole" / "manifest.json").read_text())
    assert sum(i["size"] for i in manifest["inputs"]) == len(data)
    assert manifest["totals"]["documents"] == whole["totals"]["documents"]
    assert manifest["totals"]["document_tokens"] == whole["totals"]["document_tokens"]
    assert documents(tmp_path / "parts") == documents(tmp_path / "whole")
    assert bpetok.verify(tmp_path / "parts").ok


def test_grouping_jsonl_gzip_and_parquet(tmp_path: Path) -> None:
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(0, 80)))) for _ in range(600)]
    inputs = []
    for k in range(3):  # small files, grouped
        p = tmp_path / f"a{k}.jsonl"
        p.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[k * 4 : k * 4 + 4]))
        inputs.append(p)
    big = tmp_path / "b.jsonl"
    big.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    gz = tmp_path / "c.jsonl.gz"
    gz.write_bytes(gzip.compress(big.read_bytes(), mtime=0))
    parquet = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": texts}), parquet, row_group_size=50)
    inputs += [big, gz, parquet]
    paths = list(map(str, inputs))
    cli("pack", *paths, "-o", str(tmp_path / "whole"), "--quiet", *PACK)
    cli("pack", *paths, "-o", str(tmp_path / "parts"), "--quiet", "--partition-size", "8KiB", *PACK)
    manifest = json.loads((tmp_path / "parts" / "manifest.json").read_text())
    ranges = [(Path(i["path"]).name, i.get("range")) for i in manifest["inputs"]]
    assert manifest["partitions"][0]["inputs"] == 3  # the three small files together
    assert any(name == "b.jsonl" and r and "bytes" in r for name, r in ranges)
    assert [r for name, r in ranges if name == "c.jsonl.gz"] == [None]  # compressed: whole
    groups = [r["row_groups"] for name, r in ranges if name == "d.parquet"]
    assert len(groups) > 1 and groups[0][0] == 0 and groups[-1][1] == 12
    assert all(a[1] == b[0] for a, b in itertools.pairwise(groups))
    assert documents(tmp_path / "parts") == documents(tmp_path / "whole")
    # Deterministic: a second run writes the same bytes.
    cli("pack", *paths, "-o", str(tmp_path / "again"), "--quiet", "--partition-size", "8KiB", *PACK)
    assert tree(tmp_path / "again") == tree(tmp_path / "parts")
    inspected = cli("inspect", str(tmp_path / "parts"))
    assert "samples" in inspected.stdout + inspected.stderr


def test_verify_catches_damage(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(tricky_lines(9) * 20)
    out = tmp_path / "out"
    cli("pack", str(path), "--lines", "-o", str(out), "--quiet", "--partition-size", "4KiB", *PACK)
    assert bpetok.verify(out).ok
    manifest_path = out / "manifest.json"
    original = manifest_path.read_bytes()

    manifest = json.loads(original)
    manifest["totals"]["samples"] += 1
    manifest_path.write_text(json.dumps(manifest, indent=2))
    report = bpetok.verify(out)
    assert not report.ok and any("totals" in str(v) for v in report.violations)
    manifest_path.write_bytes(original)

    shard = out / "part-00001" / "shard-00000.tokens.npy"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    report = bpetok.verify(out)
    assert not report.ok and any("part-00001/shard-00000.tokens.npy" in str(v) for v in report.violations)
