"""``bpetok pack``, ``inspect`` and ``verify`` end to end, in subprocesses: the shards hold every
document exactly (read back with ``bpetok.ShardDataset``), attention over packed samples equals
attention over whole documents, the output does not depend on ``--threads``, and a damaged or
unfinished output is caught."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import bpetok
import numpy as np
import pytest
from test_dataset import assert_attention_matches_whole_documents

WORDS = "the quick brown fox jumps over a lazy dog while bpetok packs every token exactly once".split()


def corpus(n: int, seed: int, lengths: tuple[int, ...] = (0, 1, 3, 20, 60, 200, 600)) -> list[str]:
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        length = int(rng.choice(lengths))
        words = rng.choice(WORDS, size=length)
        docs.append(f"doc {i}: " + " ".join(words) if length else "")
    return docs


def write_jsonl(path: Path, docs: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    return path


def bpetok_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "bpetok", *args], capture_output=True, text=True, timeout=300
    )
    if check:
        assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def pack(inputs: Path, out: Path, *extra: str) -> dict[str, object]:
    result = bpetok_cli("pack", str(inputs), "-o", str(out), "--json", "--quiet", *extra)
    summary: dict[str, object] = json.loads(result.stdout)
    return summary


def directory_bytes(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


@pytest.mark.parametrize(
    ("seq_len", "window", "overlap"),
    [(64, 16, None), (64, 0, None), (32, 64, None), (48, 12, 4)],
)
def test_pack_holds_every_document_exactly(
    tmp_path: Path, seq_len: int, window: int, overlap: int | None
) -> None:
    docs = corpus(120, seed=seq_len + window)
    inputs = write_jsonl(tmp_path / "in.jsonl", docs)
    extra = [
        "--seq-len",
        str(seq_len),
        "--window",
        str(window),
        "--pack-buffer",
        "40",
        "--samples-per-shard",
        "25",
    ]
    if overlap is not None:
        extra += ["--overlap", str(overlap)]
    summary = pack(inputs, tmp_path / "out", *extra)
    tok = bpetok.Tokenizer.default()
    encoded = [[tok.bos_id(), *tok.encode(d), tok.eos_id()] for d in docs]
    assert summary["documents"] == len(docs)
    assert summary["tokens"] == sum(map(len, encoded))

    ds = bpetok.ShardDataset(tmp_path / "out")
    assert ds.seq_len == seq_len
    targets: dict[int, list[int]] = {i: [] for i in range(len(docs))}
    for i in range(len(ds)):
        sample = ds[i]
        bounds = sample["cu_seqlens"]
        for k, doc_id in enumerate(sample["doc_ids"].tolist()):
            if doc_id < 0:
                assert (sample["labels"][bounds[k] : bounds[k + 1]] == -100).all()
                continue
            start = int(sample["doc_starts"][k])
            ids = sample["input_ids"][bounds[k] : bounds[k + 1]].tolist()
            assert ids == encoded[doc_id][start : start + len(ids)]
            for p in range(bounds[k], bounds[k + 1]):
                if sample["labels"][p] != -100:
                    targets[doc_id].append(start + p - bounds[k])
    for doc_id, positions in targets.items():
        # Every token of every document but its first is a target exactly once.
        assert sorted(positions) == list(range(1, len(encoded[doc_id]))), doc_id


def test_attention_over_packed_samples_equals_whole_documents(tmp_path: Path) -> None:
    docs = corpus(40, seed=7, lengths=(0, 1, 5, 20, 40, 80))
    inputs = write_jsonl(tmp_path / "in.jsonl", docs)
    window = 12
    pack(inputs, tmp_path / "out", "--seq-len", "48", "--window", str(window), "--pack-buffer", "16")
    tok = bpetok.Tokenizer.default()
    encoded = [np.array([tok.bos_id(), *tok.encode(d), tok.eos_id()]) for d in docs]
    ds = bpetok.ShardDataset(tmp_path / "out")
    checked = sum(assert_attention_matches_whole_documents(ds[i], encoded, window) for i in range(len(ds)))
    assert checked == sum(len(e) - 1 for e in encoded)


def test_output_does_not_depend_on_threads_or_runs(tmp_path: Path) -> None:
    inputs = write_jsonl(tmp_path / "in.jsonl", corpus(400, seed=3))
    args = ("--seq-len", "128", "--window", "32", "--samples-per-shard", "30", "--pack-buffer", "64")
    pack(inputs, tmp_path / "a", *args, "--threads", "1")
    pack(inputs, tmp_path / "b", *args, "--threads", "2")
    pack(inputs, tmp_path / "c", *args, "--threads", "2")
    assert (
        directory_bytes(tmp_path / "a") == directory_bytes(tmp_path / "b") == directory_bytes(tmp_path / "c")
    )
    pack(inputs, tmp_path / "d", *args, "--seed", "1")
    assert directory_bytes(tmp_path / "a") != directory_bytes(tmp_path / "d")


def test_manifest_records_inputs_and_options(tmp_path: Path) -> None:
    docs = corpus(30, seed=5)
    inputs = write_jsonl(tmp_path / "in.jsonl", docs)
    pack(inputs, tmp_path / "out", "--seq-len", "64", "--window", "16")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    import hashlib

    assert (
        manifest["tokenizer"]["sha256"] == hashlib.sha256(bpetok.Tokenizer.default().model_bytes).hexdigest()
    )
    assert manifest["inputs"] == [
        {
            "path": str(inputs),
            "size": inputs.stat().st_size,
            "sha256": hashlib.sha256(inputs.read_bytes()).hexdigest(),
            "documents": len(docs),
        }
    ]
    assert manifest["options"]["seq_len"] == 64 and manifest["options"]["window"] == 16
    assert manifest["options"]["pad_id"] == bpetok.Tokenizer.default().eos_id()
    assert manifest["totals"]["documents"] == len(docs)


def test_verify_passes_then_catches_damage(tmp_path: Path) -> None:
    inputs = write_jsonl(tmp_path / "in.jsonl", corpus(60, seed=11))
    out = tmp_path / "out"
    pack(inputs, out, "--seq-len", "64", "--window", "16", "--samples-per-shard", "20")
    ok = bpetok_cli("verify", str(out))
    assert "OK" in ok.stdout
    tokens = out / "shard-00000.tokens.npy"
    data = bytearray(tokens.read_bytes())
    data[-1] ^= 1
    tokens.write_bytes(bytes(data))
    bad = bpetok_cli("verify", str(out), check=False)
    assert bad.returncode == 1
    assert "shard-00000.tokens.npy" in bad.stderr
    report = json.loads(bpetok_cli("verify", str(out), "--json", check=False).stdout)
    assert report["ok"] is False and report["violations"]


def test_inspect_summary_and_show(tmp_path: Path) -> None:
    inputs = write_jsonl(tmp_path / "in.jsonl", corpus(50, seed=13))
    out = tmp_path / "out"
    summary = pack(inputs, out, "--seq-len", "64", "--window", "16")
    text = bpetok_cli("inspect", str(out), "--show", "0").stdout
    assert "padding" in text and "segment lengths" in text and "sample 0:" in text
    data = json.loads(bpetok_cli("inspect", str(out), "--json").stdout)
    assert data["totals"]["samples"] == summary["samples"]
    assert sum(b["document_segments"] + b["padding_segments"] for b in data["segment_lengths"]) > 0


def test_failed_pack_leaves_no_manifest(tmp_path: Path) -> None:
    good = corpus(2000, seed=17)
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in good) + "{not json\n", encoding="utf-8")
    out = tmp_path / "out"
    result = bpetok_cli(
        "pack",
        str(path),
        "-o",
        str(out),
        "--seq-len",
        "64",
        "--window",
        "16",
        "--samples-per-shard",
        "10",
        "--pack-buffer",
        "20",
        check=False,
    )
    assert result.returncode == 1
    assert f"{path}:{len(good) + 1}" in result.stderr
    assert not (out / "manifest.json").exists()
    assert not list(out.glob(".*.tmp"))
    unfinished = bpetok_cli("verify", str(out), check=False)
    assert unfinished.returncode == 1


def test_refuses_bad_options_and_existing_output(tmp_path: Path) -> None:
    inputs = write_jsonl(tmp_path / "in.jsonl", corpus(10, seed=19))
    out = tmp_path / "out"
    bad = bpetok_cli(
        "pack",
        str(inputs),
        "-o",
        str(out),
        "--seq-len",
        "16",
        "--window",
        "4",
        "--overlap",
        "16",
        check=False,
    )
    assert bad.returncode == 1 and "overlap" in bad.stderr
    pack(inputs, out, "--seq-len", "64", "--window", "16")
    again = bpetok_cli("pack", str(inputs), "-o", str(out), "--seq-len", "64", "--window", "16", check=False)
    assert again.returncode == 1 and "overwrite" in again.stderr
    pack(inputs, out, "--seq-len", "64", "--window", "16", "--overwrite", "--seed", "3")
    assert bpetok_cli("verify", str(out)).returncode == 0


def test_pack_reads_parquet_and_compressed_jsonl_alike(tmp_path: Path) -> None:
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = corpus(80, seed=23)
    pq.write_table(pa.table({"text": docs}), tmp_path / "in.parquet")
    with gzip.open(tmp_path / "in.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": d}) + "\n" for d in docs)
    args = ("--seq-len", "64", "--window", "16")
    pack(tmp_path / "in.parquet", tmp_path / "a", *args)
    pack(tmp_path / "in.jsonl.gz", tmp_path / "b", *args)
    a, b = directory_bytes(tmp_path / "a"), directory_bytes(tmp_path / "b")
    # The same documents give the same shards; only the manifest's input list differs.
    assert {k: v for k, v in a.items() if k != "manifest.json"} == {
        k: v for k, v in b.items() if k != "manifest.json"
    }
    assert json.loads(a["manifest.json"])["totals"] == json.loads(b["manifest.json"])["totals"]


def test_mixed_inputs_keep_document_order_across_readers(tmp_path: Path) -> None:
    """JSONL and text are read in Rust, Parquet in Python: a directory mixing them still gives
    document ids in input order, and each input its own manifest entry."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = [corpus(30, seed=s) for s in (41, 42, 43)]
    src = tmp_path / "src"
    src.mkdir()
    write_jsonl(src / "a.jsonl", parts[0])
    pq.write_table(pa.table({"text": parts[1]}), src / "b.parquet")
    (src / "c").mkdir()
    (src / "c" / "d.txt").write_text("\n".join(d or "x" for d in parts[2]) + "\n", encoding="utf-8")
    summary = pack(src, tmp_path / "out", "--seq-len", "64", "--window", "16", "--lines")
    docs = parts[0] + parts[1] + [d or "x" for d in parts[2]]
    tok = bpetok.Tokenizer.default()
    encoded = [[tok.bos_id(), *tok.encode(d), tok.eos_id()] for d in docs]
    assert summary["documents"] == len(docs) and summary["tokens"] == sum(map(len, encoded))
    ds = bpetok.ShardDataset(tmp_path / "out")
    seen = set()
    for i in range(len(ds)):
        sample = ds[i]
        bounds = sample["cu_seqlens"]
        for k, doc_id in enumerate(sample["doc_ids"].tolist()):
            if doc_id >= 0:
                start = int(sample["doc_starts"][k])
                ids = sample["input_ids"][bounds[k] : bounds[k + 1]].tolist()
                assert ids == encoded[doc_id][start : start + len(ids)]
                seen.add(doc_id)
    assert seen == set(range(len(docs)))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [(Path(f["path"]).name, f["documents"]) for f in manifest["inputs"]] == [
        ("a.jsonl", 30),
        ("b.parquet", 30),
        ("d.txt", 30),
    ]
    for f in manifest["inputs"]:
        data = Path(f["path"]).read_bytes()
        assert (f["size"], f["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())


def test_pack_reads_stdin_compressed_or_not(tmp_path: Path) -> None:
    import gzip

    docs = corpus(300, seed=23)
    path = write_jsonl(tmp_path / "in.jsonl", docs)
    from_file = pack(path, tmp_path / "a", "--seq-len", "64", "--window", "16")
    for name, data in (("plain", path.read_bytes()), ("gzip", gzip.compress(path.read_bytes()))):
        out = tmp_path / name
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "bpetok",
                "pack",
                "-",
                "-o",
                str(out),
                "--seq-len",
                "64",
                "--window",
                "16",
            ],
            input=data,
            capture_output=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["inputs"] == [
            {"path": "-", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "documents": 300}
        ]
        # The same shards as from the file.
        assert directory_bytes(out).keys() == directory_bytes(tmp_path / "a").keys()
        for key in directory_bytes(out):
            if key != "manifest.json":
                assert (out / key).read_bytes() == (tmp_path / "a" / key).read_bytes()
    assert from_file["documents"] == 300


def test_interrupted_pack_stops_promptly_and_leaves_no_manifest(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with subprocess.Popen(
        [sys.executable, "-m", "bpetok", "pack", "-", "-o", str(out), "--seq-len", "64", "--window", "16"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # Ctrl-C as a terminal delivers it, even from a background job (SIGINT ignored there).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    ) as proc:
        assert proc.stdin is not None and proc.stderr is not None
        proc.stdin.write(b"".join(json.dumps({"text": d}).encode() + b"\n" for d in corpus(200, seed=29)))
        proc.stdin.flush()
        deadline = time.monotonic() + 30
        while not out.exists():  # the output directory appears once the run has started
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        time.sleep(0.3)
        # stdin stays open and idle: the reader is blocked reading it when the signal comes.
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        finally:
            proc.stdin.close()
        stderr = proc.stderr.read()
    assert proc.returncode == 130, stderr
    assert stderr.decode().strip() == "bpetok: interrupted"
    assert not (out / "manifest.json").exists()
    # The run made the directory and had completed no shard: it removed the directory again.
    assert not out.exists() or not [p for p in out.iterdir() if p.name.endswith(".tmp")]
