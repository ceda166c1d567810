"""Crash safety and ``bpetok pack --resume``, in subprocesses: a run killed with SIGKILL at random
moments (on 1 and 2 threads) is never taken for complete by ``verify``, and resumes to exactly
the bytes of an uninterrupted run, even when the resume is killed too; a full disk and a
read-only output directory give one clean error and no shard that looks complete, and a run
stopped by a full disk resumes once there is room. ``docs/reliability.md`` describes them."""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import bpetok
import numpy as np
import pytest

WORDS = "the quick brown fox jumps over a lazy dog while bpetok packs every token exactly once".split()
# Small samples and shards: many checkpoints in a run of a few seconds.
PACK_ARGS = ("--seq-len", "256", "--window", "128", "--samples-per-shard", "64", "--pack-buffer", "200")
KILLS = int(os.environ.get("BPETOK_RESUME_KILLS", "20"))


def write_corpus(path: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            length = int(rng.choice((0, 3, 20, 80, 300, 1500)))
            f.write(json.dumps({"text": f"doc {i}: " + " ".join(rng.choice(WORDS, size=length))}) + "\n")
    return path


def command(inputs: list[Path], out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bpetok", "pack", *map(str, inputs), "-o", str(out), *PACK_ARGS, *extra]


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)  # type: ignore[call-overload]


def directory_bytes(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("resume-corpus")
    return [write_corpus(root / f"part{k}.jsonl", 1200, seed=k) for k in range(3)]


@pytest.fixture(scope="module")
def full_run(
    corpus: list[Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, bytes], float, float]:
    """The uninterrupted run's files, when its first checkpoint appeared, and how long it took."""
    out = tmp_path_factory.mktemp("resume-full") / "out"
    start = time.monotonic()
    process = subprocess.Popen(command(corpus, out, "--quiet"), stderr=subprocess.PIPE, text=True)
    first_checkpoint = None
    while process.poll() is None:
        if first_checkpoint is None and (out / "resume.json").exists():
            first_checkpoint = time.monotonic() - start
        time.sleep(0.005)
    seconds = time.monotonic() - start
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""
    if process.stderr:
        process.stderr.close()
    files = directory_bytes(out)
    assert "resume.json" not in files
    assert sum(name.endswith(".tokens.npy") for name in files) > 40
    return files, first_checkpoint or seconds / 2, seconds


def assert_unfinished_or_complete(out: Path, want: dict[str, bytes]) -> None:
    """What a kill may leave: a complete output (exactly the uninterrupted one), or one without a
    manifest that ``verify`` refuses, whose final-named shard files are whole (every one the
    checkpoint lists has its recorded size)."""
    if not out.exists():
        return
    if (out / "manifest.json").exists():
        # Killed after the manifest was written (a resume.json may remain: removed next).
        files = directory_bytes(out)
        files.pop("resume.json", None)
        assert files == want
        assert bpetok.verify(out).ok
        return
    report = bpetok.verify(out)
    assert not report.ok
    assert "no manifest.json" in report.violations[0]
    checkpoint_path = out / "resume.json"
    if checkpoint_path.exists():
        checkpoint = json.loads(checkpoint_path.read_text())
        for shard in checkpoint["shards"]:
            for digest in shard["files"].values():
                assert (out / digest["path"]).stat().st_size == digest["size"]
                assert (out / digest["path"]).read_bytes() == want[digest["path"]]


def killed_at(args: list[str], delay: float) -> int:
    """Starts ``args``, SIGKILLs it after ``delay`` seconds (if still running); its exit code."""
    process = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=default_sigint
    )
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
    return process.wait(timeout=60)


@pytest.mark.parametrize("threads", [1, 2])
def test_sigkill_at_random_moments_resumes_to_the_same_bytes(
    corpus: list[Path], full_run: tuple[dict[str, bytes], float, float], tmp_path: Path, threads: int
) -> None:
    want, first_checkpoint, seconds = full_run
    seed = 20261201 + threads
    rng = random.Random(seed)
    args = command(corpus, tmp_path / "out", "--quiet", "--threads", str(threads))
    resume = [*args, "--resume"]
    resumed_after_a_checkpoint = 0
    for k in range(KILLS):
        out = tmp_path / "out"
        # Mostly while it runs after its first checkpoint; some before it, some after the end.
        delay = rng.uniform(first_checkpoint * 0.5, seconds * 1.05)
        note = f"kill {k} at {delay:.2f} s (seed {seed}, threads {threads})"
        killed_at(args, delay)
        assert_unfinished_or_complete(out, want)
        had_checkpoint = (out / "resume.json").exists()
        if k % 4 == 3:
            # Kill the resume too, then resume that.
            killed_at(resume, rng.uniform(0.0, seconds * 0.6))
            assert_unfinished_or_complete(out, want)
        result = run(resume)
        assert result.returncode == 0, f"{note}: {result.stderr}"
        assert directory_bytes(out) == want, note
        assert bpetok.verify(out).ok
        resumed_after_a_checkpoint += had_checkpoint
        # Start over for the next kill.
        for p in out.iterdir():
            p.unlink()
        out.rmdir()
    assert resumed_after_a_checkpoint >= KILLS // 5, "too few kills landed after a checkpoint"


def test_resume_summary_says_what_was_kept(
    corpus: list[Path], full_run: tuple[dict[str, bytes], float, float], tmp_path: Path
) -> None:
    want, _, seconds = full_run
    out = tmp_path / "out"
    args = command(corpus, out, "--quiet")
    # Stop it (Ctrl-C) once a checkpoint is there.
    process = subprocess.Popen(args, stderr=subprocess.PIPE, preexec_fn=default_sigint)
    deadline = time.monotonic() + seconds * 3
    while not (out / "resume.json").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("the run finished before it could be stopped")
    assert process.returncode == 130, stderr
    # A fresh run refuses the directory and says how to go on.
    refused = run(command(corpus, out))
    assert refused.returncode == 1
    assert "holds an unfinished packing run (resume.json); pass --resume to continue it" in refused.stderr
    # A resume with another option is refused with the difference named.
    other = run([*command(corpus, out), "--resume", "--seed", "3"])
    assert other.returncode == 1
    assert "seed was 0, is 3" in other.stderr, other.stderr
    result = run([*command(corpus, out), "--resume", "--json", "--quiet"])
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["resumed"]["shards"] > 0 and not summary["resumed"]["complete"]
    assert directory_bytes(out) == want
    again = run([*command(corpus, out), "--resume"])
    assert again.returncode == 0
    assert "already complete" in again.stderr
    assert directory_bytes(out) == want


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB tmpfs (root can mount one here); skipped where mounting is not allowed."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_gives_a_clean_error_and_resumes_once_there_is_room(
    corpus: list[Path], full_run: tuple[dict[str, bytes], float, float], small_filesystem: Path
) -> None:
    want, _, _ = full_run
    total = sum(len(v) for v in want.values())
    assert total > 3 * 2**20, "the output must not fit the small file system"
    out = small_filesystem / "out"
    result = run(command(corpus, out))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("bpetok: error: "), result.stderr
    assert "No space left on device" in lines[-1], result.stderr
    assert "Traceback" not in result.stderr
    assert_unfinished_or_complete(out, want)
    assert not (out / "manifest.json").exists()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")], "temporaries are removed"
    # Room again: the same run resumes to the uninterrupted bytes.
    subprocess.run(["mount", "-o", "remount,size=256m", str(small_filesystem)], check=True)
    resumed = run([*command(corpus, out), "--resume", "--quiet"])
    assert resumed.returncode == 0, resumed.stderr
    assert directory_bytes(out) == want


def limit_file_size() -> None:
    default_sigint()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))


def test_a_file_size_limit_gives_a_clean_error_and_no_complete_looking_shard(
    corpus: list[Path], full_run: tuple[dict[str, bytes], float, float], tmp_path: Path
) -> None:
    """RLIMIT_FSIZE (a quota, as a file system without room but per file): a shard file cannot
    grow past 200 kB, so the first shard of 256 kB fails."""
    want, _, _ = full_run
    out = tmp_path / "out"
    result = run([*command(corpus, out), "--samples-per-shard", "500"], preexec_fn=limit_file_size)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("bpetok: error: "), result.stderr
    assert "File too large" in result.stderr, result.stderr
    assert not (out / "manifest.json").exists()
    assert not [p for p in out.iterdir() if p.name.startswith("shard-")] if out.exists() else True
    assert not bpetok.verify(out).ok
    del want


def test_a_read_only_output_directory_gives_a_clean_error(corpus: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    if os.geteuid() == 0:
        made = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(out)], capture_output=True
        )
        if made.returncode != 0:
            pytest.skip("root cannot be kept from writing without a read-only mount")
    else:
        out.chmod(0o555)
    try:
        result = run(command(corpus, out))
        assert result.returncode == 1
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("bpetok: error: "), result.stderr
        assert "Read-only file system" in last or "Permission denied" in last, last
        assert "Traceback" not in result.stderr
        assert list(out.iterdir()) == []
        # Under a read-only parent, the directory cannot be made: the same clean error.
        nested = run(command(corpus, out / "sub"))
        assert nested.returncode == 1
        assert nested.stderr.strip().splitlines()[-1].startswith("bpetok: error: ")
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(out)], check=False)
        else:
            out.chmod(0o755)


@pytest.fixture(scope="module")
def mixed_corpus(corpus: list[Path], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The corpus as gzip and zstd JSONL, Parquet (row groups of 500) and whole text files:
    resuming passes over records of each kind differently (decompressing, skipping rows)."""
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    root = tmp_path_factory.mktemp("resume-mixed")
    gz = root / "a.jsonl.gz"
    gz.write_bytes(gzip.compress(corpus[0].read_bytes()))
    zst = root / "b.jsonl.zst"
    zst.write_bytes(zstandard.ZstdCompressor().compress(corpus[1].read_bytes()))
    texts = [json.loads(line)["text"] for line in corpus[2].read_text(encoding="utf-8").splitlines()]
    parquet = root / "c.parquet"
    pq.write_table(pa.table({"text": texts}), parquet, row_group_size=500)
    whole = root / "d.txt"
    whole.write_text("\n".join(texts[:200]), encoding="utf-8")
    return [gz, zst, parquet, whole]


@pytest.mark.parametrize("threads", [1, 2])
def test_resume_passes_over_compressed_parquet_and_text_inputs(
    mixed_corpus: list[Path], tmp_path: Path, threads: int
) -> None:
    out = tmp_path / "full"
    start = time.monotonic()
    result = run(command(mixed_corpus, out, "--quiet", "--threads", str(threads)))
    assert result.returncode == 0, result.stderr
    seconds = time.monotonic() - start
    want = directory_bytes(out)
    rng = random.Random(7 + threads)
    out = tmp_path / "out"
    args = command(mixed_corpus, out, "--quiet", "--threads", str(threads))
    for k in range(max(KILLS // 3, 2)):
        delay = rng.uniform(0.2, seconds)
        killed_at(args, delay)
        assert_unfinished_or_complete(out, want)
        resumed = run([*args, "--resume"])
        assert resumed.returncode == 0, f"kill {k} at {delay:.2f} s: {resumed.stderr}"
        assert directory_bytes(out) == want, f"kill {k} at {delay:.2f} s (threads {threads})"
        for p in out.iterdir():
            p.unlink()
        out.rmdir()
