"""Partitioned packing from the outside (``bpetok pack --partition-size``, ``bpetok.pack(...,
partition_size=...)``, ``docs/distributed.md``): two runs write the same bytes, ``verify`` passes,
the samples read back through ``ShardDataset`` hold every document once with exactly its tokens,
Parquet is cut by row groups, a killed run resumes to the uninterrupted run's bytes, bad sizes
and standard input are refused in one line, an output in the way is refused or replaced, and
``inspect`` reads a partitioned directory."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import bpetok
import numpy as np
import pytest

CORPORA = Path(os.environ.get("BPETOK_CORPORA") or "/tmp/bpetok-corpora")
WORDS = "the quick brown fox jumps over a lazy dog Größe 東京 😀 naïve".split()
PACK = ("--seq-len", "1024", "--window", "256", "--samples-per-shard", "32")
SIZE = "128KiB"


def cli(
    *args: str | Path, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bpetok", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(*args: str | Path) -> subprocess.CompletedProcess[str]:
    result = cli(*args)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def one_error_line(result: subprocess.CompletedProcess[str], status: int = 1) -> str:
    """The run failed with ``status`` and printed exactly one ``bpetok: error:`` line."""
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bpetok: error: "), result.stderr
    return lines[0].removeprefix("bpetok: error: ")


def tree(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (relative path: bytes), hidden ones included."""
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def manifest_of(directory: Path) -> dict:
    return json.loads((directory / "manifest.json").read_text())


def words(rng: np.random.Generator, n: int) -> str:
    return " ".join(rng.choice(WORDS, size=n))


def generated_jsonl(path: Path, n: int, seed: int, bom: bool = False) -> Path:
    """Documents of many lengths, with CRLF endings, blank lines and (``bom``) a byte order mark."""
    rng = np.random.default_rng(seed)
    out = bytearray(b"\xef\xbb\xbf" if bom else b"")
    for i in range(n):
        if i % 13 == 4:
            out += b"\n" if i % 2 else b"  \r\n"
        text = f"doc {seed}/{i}: " + words(rng, int(rng.choice((0, 2, 10, 60, 300, 1200))))
        out += json.dumps({"text": text}, ensure_ascii=bool(i % 2)).encode()
        out += b"\r\n" if i % 5 == 0 else b"\n"
    path.write_bytes(bytes(out))
    return path


def head_of(name: str, size: int, path: Path, seed: int) -> Path:
    """The first lines (about ``size`` bytes) of a test corpus, or generated JSONL without them."""
    source = CORPORA / name
    if not source.is_file():
        return generated_jsonl(path, size // 700, seed)
    with source.open("rb") as f:
        data = f.read(size)
    path.write_bytes(data[: data.rindex(b"\n") + 1])
    return path


def texts_of(path: Path) -> list[str]:
    """The documents of a JSONL (plain or gzip) or Parquet input, read here the way docs/cli.md
    says: one JSON object per non-blank line, a leading BOM dropped; a row per Parquet row."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).column("text").to_pylist()
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    text = data.decode("utf-8").removeprefix("\ufeff")
    return [json.loads(line)["text"] for line in text.split("\n") if line.strip()]


def expected_documents(inputs: list[Path]) -> list[list[int]]:
    return [bpetok.encode(t, add_bos=True, add_eos=True) for path in inputs for t in texts_of(path)]


def documents_of(out: Path) -> list[list[int]]:
    """Every document's tokens read back through ``ShardDataset(out)`` (the whole directory, as a
    training job reads it): samples are mapped to their partition by the manifest's shards, the
    segments of each (partition, doc_id) put together by ``doc_starts`` (a continuation chunk
    repeats its context, which must agree), then ordered by partition and doc_id."""
    manifest = manifest_of(out)
    partitions = manifest.get("partitions")
    names = [p["name"] for p in partitions] if partitions is not None else [""]
    owner: list[int] = []
    for shard in manifest["shards"]:
        part = shard["name"].split("/")[0] if partitions is not None else ""
        owner += [names.index(part)] * shard["samples"]
    ds = bpetok.ShardDataset(out)
    assert len(ds) == len(owner) == manifest["totals"]["samples"]
    segments: dict[tuple[int, int], list[tuple[int, np.ndarray]]] = defaultdict(list)
    for i in range(len(ds)):
        sample = ds[i]
        cu = sample["cu_seqlens"]
        for k, doc in enumerate(sample["doc_ids"]):
            if doc >= 0:
                segments[owner[i], int(doc)].append(
                    (int(sample["doc_starts"][k]), sample["input_ids"][cu[k] : cu[k + 1]])
                )
    for p, name in enumerate(names):
        ids = sorted(d for q, d in segments if q == p)
        assert ids == list(range(len(ids))), f"doc_ids of partition {name or out} are not 0..n-1"
        if partitions is not None:
            assert (
                len(ids) == partitions[p]["documents"] - manifest_of(out / name)["totals"]["empty_documents"]
            )
    docs = []
    for key in sorted(segments):
        tokens = np.zeros(0, dtype=np.int64)
        for start, chunk in sorted(segments[key], key=lambda s: s[0]):
            have = len(tokens)
            assert start <= have < start + len(chunk), f"document {key}: a gap or a repeated chunk at {start}"
            assert np.array_equal(tokens[start:], chunk[: have - start]), f"document {key}: context differs"
            tokens = np.concatenate([tokens, chunk[have - start :]])
        docs.append(tokens.tolist())
    return docs


# ---- one corpus, packed three times ------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """About 1.9 MB: heads of three test corpora (cut into byte ranges), generated JSONL with a
    BOM, CRLF and blank lines, two tiny files (grouped) and a gzip file (never cut)."""
    root = tmp_path_factory.mktemp("partition-corpus")
    packed = root / "packed.jsonl.gz"
    packed.write_bytes(gzip.compress(generated_jsonl(root / "for-gzip.jsonl", 300, seed=9).read_bytes()))
    (root / "for-gzip.jsonl").unlink()
    return [
        head_of("en.jsonl", 600_000, root / "en.jsonl", seed=1),
        generated_jsonl(root / "tiny1.jsonl", 5, seed=2),
        generated_jsonl(root / "tiny2.jsonl", 5, seed=3),
        head_of("code.jsonl", 400_000, root / "code.jsonl", seed=4),
        generated_jsonl(root / "mixed.jsonl", 400, seed=5, bom=True),
        packed,
        head_of("ja.jsonl", 300_000, root / "ja.jsonl", seed=6),
    ]


@pytest.fixture(scope="module")
def runs(corpus: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two partitioned runs (on all CPUs and on one thread) and an unpartitioned one."""
    root = tmp_path_factory.mktemp("partition-runs")
    out = {"a": root / "a", "b": root / "b", "plain": root / "plain"}
    ok("pack", *corpus, "-o", out["a"], "--quiet", "--partition-size", SIZE, *PACK)
    ok("pack", *corpus, "-o", out["b"], "--quiet", "--partition-size", SIZE, "--threads", "1", *PACK)
    ok("pack", *corpus, "-o", out["plain"], "--quiet", *PACK)
    return out


def test_two_runs_write_the_same_bytes(runs: dict[str, Path]) -> None:
    a, b = tree(runs["a"]), tree(runs["b"])
    assert a.keys() == b.keys()
    for name in a:
        assert a[name] == b[name], name
    partitions = manifest_of(runs["a"])["partitions"]
    assert len(partitions) > 5
    # Nothing but the manifest and the partitions: no temporaries left.
    assert sorted(p.name for p in runs["a"].iterdir()) == sorted(
        ["manifest.json", *(p["name"] for p in partitions)]
    )


def test_verify_passes(runs: dict[str, Path]) -> None:
    result = ok("verify", runs["a"])
    assert "OK" in result.stdout
    report = bpetok.verify(runs["a"])
    assert report.ok, report.violations
    for p in manifest_of(runs["a"])["partitions"]:
        assert bpetok.verify(runs["a"] / p["name"]).ok


def test_every_document_once_with_its_tokens(corpus: list[Path], runs: dict[str, Path]) -> None:
    expected = expected_documents(corpus)
    assert documents_of(runs["plain"]) == expected
    got = documents_of(runs["a"])
    assert len(got) == len(expected)
    assert got == expected


def test_manifest_records_the_pieces(corpus: list[Path], runs: dict[str, Path]) -> None:
    m, plain = manifest_of(runs["a"]), manifest_of(runs["plain"])
    assert m["options"]["partition_size"] == 128 * 1024
    assert "partition_size" not in plain["options"] or plain["options"]["partition_size"] is None
    for key in ("documents", "empty_documents", "document_tokens", "documents_split", "context_tokens"):
        assert m["totals"][key] == plain["totals"][key], key
    assert sum(p["documents"] for p in m["partitions"]) == m["totals"]["documents"]
    assert sum(p["inputs"] for p in m["partitions"]) == len(m["inputs"])
    assert sum(p["shards"] for p in m["partitions"]) == len(m["shards"])
    for whole in plain["inputs"]:
        pieces = [i for i in m["inputs"] if i["path"] == whole["path"]]
        assert sum(i["documents"] for i in pieces) == whole["documents"], whole["path"]
        if whole["size"] > 128 * 1024 and not whole["path"].endswith(".gz"):
            # Byte ranges of the partition size, one after the other, to the file's end.
            ranges = [i["range"]["bytes"] for i in pieces]
            assert ranges[0][0] == 0 and ranges[-1][1] == whole["size"]
            assert all(r[1] == s[0] for r, s in itertools.pairwise(ranges))
            assert all(r[1] - r[0] == 128 * 1024 for r in ranges[:-1])
            assert sum(i["size"] for i in pieces) == whole["size"]
        else:
            assert len(pieces) == 1 and "range" not in pieces[0]
            assert (pieces[0]["size"], pieces[0]["sha256"]) == (whole["size"], whole["sha256"])
    # The two tiny files share a partition.
    tiny = [k for k, i in enumerate(m["inputs"]) if "tiny" in i["path"]]
    assert tiny == [tiny[0], tiny[0] + 1]
    bounds = np.cumsum([0] + [p["inputs"] for p in m["partitions"]])
    assert sum(1 for b in bounds if tiny[0] < b <= tiny[1]) == 0


def test_the_library_writes_the_command_lines_bytes(
    corpus: list[Path], runs: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "api"
    result = bpetok.pack(corpus, out, seq_len=1024, window=256, samples_per_shard=32, partition_size=SIZE)
    assert result.samples == manifest_of(out)["totals"]["samples"]
    assert result.documents == manifest_of(runs["plain"])["totals"]["documents"]
    assert tree(out) == tree(runs["a"])
    assert (
        bpetok.pack(
            corpus,
            tmp_path / "api-int",
            seq_len=1024,
            window=256,
            samples_per_shard=32,
            partition_size=128 * 1024,
        ).manifest
        == result.manifest
    )


def test_inspect_reads_a_partitioned_directory(runs: dict[str, Path]) -> None:
    m = manifest_of(runs["a"])
    summary = json.loads(ok("inspect", runs["a"], "--json").stdout)
    assert summary["totals"] == m["totals"]
    assert summary["shards"] == len(m["shards"])
    assert bpetok.inspect(runs["a"])["totals"] == m["totals"]
    text = ok("inspect", runs["a"]).stdout
    assert f"{m['totals']['samples']} samples" in text
    last = m["totals"]["samples"] - 1
    shown = ok("inspect", runs["a"], "--show", str(last)).stdout
    assert shown.strip()
    sample = bpetok.show_sample(runs["a"], last)
    assert sample["index"] == last and sample["segments"]


# ---- Parquet ---------------------------------------------------------------------------------


def test_parquet_is_cut_by_row_groups(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rng = np.random.default_rng(7)
    texts = [f"row {i}: " + words(rng, int(rng.choice((1, 20, 120, 400)))) for i in range(600)]
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"id": list(range(600)), "text": texts}), path, row_group_size=50)
    assert pq.ParquetFile(path).metadata.num_row_groups == 12
    size = path.stat().st_size
    part = tmp_path / "part"
    plain = tmp_path / "plain"
    ok("pack", path, "-o", part, "--quiet", "--partition-size", str(size // 5), *PACK)
    ok("pack", path, "-o", plain, "--quiet", *PACK)
    m = manifest_of(part)
    groups = [i["range"]["row_groups"] for i in m["inputs"]]
    assert len(groups) >= 4 and len(m["partitions"]) == len(groups)
    assert groups[0][0] == 0 and groups[-1][1] == 12
    assert all(g[1] == h[0] and g[0] < g[1] for g, h in itertools.pairwise(groups))
    counts = [i["documents"] for i in m["inputs"]]
    assert counts == [50 * (g[1] - g[0]) for g in groups]
    expected = [bpetok.encode(t, add_bos=True, add_eos=True) for t in texts]
    assert documents_of(plain) == expected
    assert documents_of(part) == expected
    assert bpetok.verify(part).ok


# ---- resuming --------------------------------------------------------------------------------

# A small packing buffer: samples (and checkpoints) come out all through a partition.
RESUME_PACK = (
    "--seq-len",
    "256",
    "--window",
    "64",
    "--samples-per-shard",
    "8",
    "--pack-buffer",
    "64",
    "--threads",
    "1",
)


def test_resume_after_a_kill_writes_the_uninterrupted_bytes(tmp_path: Path) -> None:
    source = generated_jsonl(tmp_path / "in.jsonl", 2500, seed=11)
    args = ["pack", str(source), "--partition-size", "64KiB", "--quiet", *RESUME_PACK]
    ok(*args, "-o", tmp_path / "expected")
    want = tree(tmp_path / "expected")
    partitions = manifest_of(tmp_path / "expected")["partitions"]
    assert len(partitions) > 20

    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "bpetok", *args, "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Killed once 3 partitions are complete and the next one has a checkpoint of its own.
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        if out.is_dir():
            names = [e.name for e in os.scandir(out)]
            done = sum(n.startswith("part-") for n in names)
            mid = any(n.startswith(".part-") and (out / n / "resume.json").exists() for n in names)
            if done >= 3 and mid:
                process.send_signal(signal.SIGKILL)
                break
        time.sleep(0.0005)
    assert process.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "manifest.json").exists()
    assert not bpetok.verify(out).ok
    kept = {n: tree(out / n) for n in os.listdir(out) if n.startswith("part-")}
    assert 3 <= len(kept) < len(partitions)
    for name, files in kept.items():  # a complete partition is already its final bytes
        assert files == {k.removeprefix(f"{name}/"): v for k, v in want.items() if k.startswith(f"{name}/")}

    # A new run is refused (pass --resume or --overwrite), and leaves everything as it was.
    before = tree(out)
    message = one_error_line(cli(*args, "-o", out))
    assert "--resume" in message and "--overwrite" in message
    assert tree(out) == before

    resumed = json.loads(ok(*[a for a in args if a != "--quiet"], "-o", out, "--resume", "--json").stdout)
    assert resumed["resumed"]["shards"] > 0 and not resumed["resumed"]["complete"]
    assert tree(out) == want
    assert bpetok.verify(out).ok

    # Resuming a finished run changes nothing and says so.
    again = json.loads(ok(*[a for a in args if a != "--quiet"], "-o", out, "--resume", "--json").stdout)
    assert again["resumed"]["complete"]
    assert tree(out) == want
    # Another partition size is another run: not taken as this one.
    refused = one_error_line(cli(*args, "-o", out, "--resume", "--partition-size", "32KiB"))
    assert "cannot resume" in refused, refused
    assert tree(out) == want


def test_resume_continues_a_partition_after_its_first_piece_a_byte_range(tmp_path: Path) -> None:
    """The last partition is [the last byte range of a.jsonl, b.jsonl]. The run stops in b.jsonl
    (invalid UTF-8 on its last line) with a checkpoint that lists the byte range as read; b is
    mended (same size, same mtime) and ``--resume`` must continue to the uninterrupted bytes."""
    a = tmp_path / "a.jsonl"
    a.write_bytes(
        b"".join(
            json.dumps({"text": f"a {i} " + "quick brown fox " * 4}).encode() + b"\n" for i in range(500)
        )
    )
    good = b"".join(json.dumps({"text": f"b {i} " + "lazy dog " * 5}).encode() + b"\n" for i in range(60))
    good += b'{"text": "the end x"}\n'
    bad = good[:-4] + b"\xff" + good[-3:]
    b = tmp_path / "b.jsonl"
    b.write_bytes(bad)
    stat = b.stat()
    size_a, size_b = a.stat().st_size, len(bad)
    # A partition size whose last range of a.jsonl (with a few lines in it) and b.jsonl fit together.
    size = next(p for p in range(size_b + 400, size_a) if size_a % p >= 400 and size_a % p + size_b <= p)
    args = [
        "pack",
        str(a),
        str(b),
        "--partition-size",
        str(size),
        "--quiet",
        "--seq-len",
        "64",
        "--window",
        "16",
        "--samples-per-shard",
        "2",
        "--pack-buffer",
        "8",
        "--threads",
        "1",
    ]
    out = tmp_path / "out"
    message = one_error_line(cli(*args, "-o", out))
    assert "b.jsonl" in message and "UTF-8" in message
    last = f"part-{size_a // size:05d}"
    checkpoint = json.loads((out / f".{last}.tmp" / "resume.json").read_text())
    assert checkpoint["position"]["input"] == 1
    assert checkpoint["done_inputs"][0]["range"] == {"bytes": [size_a // size * size, size_a]}

    b.write_bytes(good)
    os.utime(b, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    resumed = cli(*args, "-o", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    ok(*args, "-o", tmp_path / "expected")
    assert tree(out) == tree(tmp_path / "expected")


# ---- refusals --------------------------------------------------------------------------------


@pytest.fixture
def small_input(tmp_path: Path) -> Path:
    return generated_jsonl(tmp_path / "in.jsonl", 200, seed=21)


@pytest.mark.parametrize(
    ("size", "phrase"),
    [
        ("0", "at least 1 byte"),
        ("0KiB", "at least 1 byte"),
        ("abc", "a size such as"),
        ("12XB", "a size such as"),
        ("-5", "a size such as"),
        ("1.5M", "a size such as"),
        ("", "a size such as"),
    ],
)
def test_bad_sizes_are_one_line_errors(small_input: Path, tmp_path: Path, size: str, phrase: str) -> None:
    message = one_error_line(
        cli("pack", small_input, "-o", tmp_path / "out", "--partition-size", size, *PACK)
    )
    assert phrase in message and repr(size) in message, message
    assert not (tmp_path / "out").exists()


def test_standard_input_is_refused(tmp_path: Path) -> None:
    result = cli(
        "pack", "-", "-o", tmp_path / "out", "--partition-size", "1MiB", *PACK, stdin='{"text": "hi"}\n'
    )
    message = one_error_line(result)
    assert "standard input" in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("size", "stdin"), [("0", False), ("abc", False), ("1MiB", True)])
def test_size_errors_name_the_flag(small_input: Path, tmp_path: Path, size: str, stdin: bool) -> None:
    """Every other option of ``pack`` is named by its flag in its error (``--seq-len: ...``,
    tests/test_cli_errors.py), not by the library's parameter name."""
    source = "-" if stdin else str(small_input)
    result = cli(
        "pack",
        source,
        "-o",
        tmp_path / "out",
        "--partition-size",
        size,
        *PACK,
        stdin='{"text": "hi"}\n' if stdin else None,
    )
    message = one_error_line(result)
    assert message.startswith("--partition-size: "), message
    assert "partition_size" not in message


def test_an_existing_output_is_refused_without_overwrite(small_input: Path, tmp_path: Path) -> None:
    partitioned, plain = tmp_path / "partitioned", tmp_path / "plain"
    ok("pack", small_input, "-o", partitioned, "--quiet", "--partition-size", "16KiB", *PACK)
    ok("pack", small_input, "-o", plain, "--quiet", *PACK)
    for out in (partitioned, plain):
        before = tree(out)
        for extra in (("--partition-size", "16KiB"), ("--partition-size", "32KiB"), ()):
            message = one_error_line(cli("pack", small_input, "-o", out, "--quiet", *extra, *PACK))
            assert "--overwrite" in message, message
            assert tree(out) == before


def test_overwrite_replaces_a_partitioned_output(small_input: Path, tmp_path: Path) -> None:
    def fresh(name: str, *extra: str) -> dict[str, bytes]:
        ok("pack", small_input, "-o", tmp_path / name, "--quiet", *extra, *PACK)
        return tree(tmp_path / name)

    many = fresh("many", "--partition-size", "8KiB")
    few = fresh("few", "--partition-size", "32KiB")
    plain = fresh("plain")
    assert (
        len(manifest_of(tmp_path / "many")["partitions"])
        > len(manifest_of(tmp_path / "few")["partitions"])
        > 1
    )

    out = tmp_path / "out"
    ok("pack", small_input, "-o", out, "--quiet", "--partition-size", "8KiB", *PACK)
    (out / "notes.txt").write_text("not ours")
    steps = [
        (("--partition-size", "32KiB"), few),  # fewer partitions: the extra ones go
        ((), plain),  # unpartitioned over partitioned: every part-NNNNN goes
        (("--partition-size", "8KiB"), many),  # and back
    ]
    for extra, want in steps:
        ok("pack", small_input, "-o", out, "--quiet", "--overwrite", *extra, *PACK)
        got = tree(out)
        assert got.pop("notes.txt") == b"not ours"
        assert sorted(got) == sorted(want)
        assert got == want
        assert bpetok.verify(out).ok
