"""``bpetok.ray`` on a Ray cluster of several nodes on this machine (``ray.cluster_utils.Cluster``:
a head without CPUs and two worker nodes of one CPU each), started by the tests.

- ``bpetok.ray.pack`` writes byte for byte the directory of ``bpetok pack --partition-size``;
- a worker process killed mid-task, a whole node removed mid-run, and a driver killed mid-run
  then rerun with ``resume=True``, all end with that same directory (so no document is lost or
  duplicated: every document's tokens are those of the single-machine run);
- each worker process loads the tokenizer once, not once per task;
- ``bpetok.ray.Tokenize`` in ``Dataset.map_batches`` gives the ids of ``bpetok.encode``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bpetok
import bpetok.ray
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ray = pytest.importorskip("ray")
from conftest import MODEL_FILES  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

pytestmark = [
    # Ray Data's DataContext warns about its own deprecated settings as it copies itself (ray 2.60).
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
]

WORDS = (
    "the quick brown fox jumps over a lazy dog while bpetok packs every token exactly once "
    "Größe naïve café 東京 日本語の文章 😀 числа"
).split()
OPTIONS: dict[str, Any] = {"seq_len": 512, "window": 256, "samples_per_shard": 64}
CLI_OPTIONS = ["--seq-len", "512", "--window", "256", "--samples-per-shard", "64"]


def write_jsonl(path: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            length = int(rng.choice((0, 5, 40, 200, 900, 4000)))
            f.write(json.dumps({"text": f"doc {i}: " + " ".join(rng.choice(WORDS, size=length))}) + "\n")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """About 6 MB: a large JSONL file (cut into byte ranges), small ones (grouped), a gzip file
    (whole) and a Parquet file of several row groups (cut by row groups)."""
    import gzip

    root = tmp_path_factory.mktemp("ray-corpus")
    big = write_jsonl(root / "a-big.jsonl", 3000, 1)
    small = [write_jsonl(root / f"b-small-{k}.jsonl", 20, 10 + k) for k in range(3)]
    gz = root / "c.jsonl.gz"
    gz.write_bytes(gzip.compress(write_jsonl(root / "c-src.txt", 400, 3).read_bytes(), mtime=0))
    lines = write_jsonl(root / "d-src.txt", 1500, 4).read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line)["text"] for line in lines]
    parquet = root / "d.parquet"
    pq.write_table(pa.table({"text": texts}), parquet, row_group_size=150)
    return [big, *small, gz, parquet]


PARTITION_SIZE = "256KiB"


def cli_pack(inputs: list[Path], out: Path, partition_size: str = PARTITION_SIZE) -> None:
    cmd = [sys.executable, "-m", "bpetok", "pack", *map(str, inputs), "-o", str(out), *CLI_OPTIONS]
    cmd += ["--partition-size", partition_size, "--quiet"]
    subprocess.run(cmd, check=True, capture_output=True)


def tree(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (relative path to bytes)."""
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def assert_same_tree(got: Path, expected: Path) -> None:
    a, b = tree(got), tree(expected)
    assert sorted(a) == sorted(b)
    different = [name for name in a if a[name] != b[name]]
    assert not different, f"files differ: {different[:5]}"


@pytest.fixture(scope="module")
def reference(corpus: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The single-machine run: ``bpetok pack --partition-size``."""
    out = tmp_path_factory.mktemp("reference") / "out"
    cli_pack(corpus, out)
    report = bpetok.verify(out)
    assert report.ok, report
    return out


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "include_dashboard": False,
            # Notice a removed node within about a second.
            "_system_config": {
                "health_check_period_ms": 200,
                "health_check_timeout_ms": 200,
                "health_check_failure_threshold": 3,
            },
        },
    )
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def worker_nodes(cluster: Cluster) -> list[Any]:
    return list(cluster.worker_nodes)


def task_pids() -> list[int]:
    """The processes running a ``bpetok.ray`` partition task now (Ray titles them ``ray::TASK``)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if cmdline.startswith(b"ray::_pack_task"):
            pids.append(int(entry))
    return pids


def temporaries(out: Path) -> list[str]:
    try:
        return [n for n in os.listdir(out) if n.startswith(".part-") and n.endswith(".tmp")]
    except FileNotFoundError:
        return []


def test_partitions_of_the_corpus(reference: Path) -> None:
    """The corpus gives what the tests below need: byte ranges, row groups, whole files and
    grouped files, several partitions."""
    manifest = json.loads((reference / "manifest.json").read_text())
    ranges = [i.get("range") for i in manifest["inputs"]]
    assert any(r and "bytes" in r for r in ranges)
    assert any(r and "row_groups" in r for r in ranges)
    assert any(r is None for r in ranges)
    assert len(manifest["partitions"]) >= 8
    assert any(p["inputs"] > 1 for p in manifest["partitions"])
    assert bpetok.verify(reference).ok


def test_identical_to_the_command_line(
    cluster: Cluster, corpus: list[Path], reference: Path, tmp_path: Path
) -> None:
    reports: list[dict[str, Any]] = []
    result = bpetok.ray.pack(
        corpus,
        tmp_path / "out",
        partition_size=PARTITION_SIZE,
        progress=False,
        on_partition=reports.append,
        **OPTIONS,
    )
    assert_same_tree(tmp_path / "out", reference)
    manifest = json.loads((reference / "manifest.json").read_text())
    assert result.documents == manifest["totals"]["documents"]
    assert result.samples == manifest["totals"]["samples"]
    assert sorted(r["name"] for r in reports) == [p["name"] for p in manifest["partitions"]]
    # Both worker nodes took part, and each worker process loaded the tokenizer once.
    assert len({r["node"] for r in reports}) == 2
    loads: dict[int, int] = {}
    for r in reports:
        loads[r["pid"]] = loads.get(r["pid"], 0) + r["loaded_tokenizer"]
    assert all(n <= 1 for n in loads.values()), loads
    assert len(loads) < len(reports)


def test_identical_with_another_vocabulary(cluster: Cluster, corpus: list[Path], tmp_path: Path) -> None:
    """A model other than the embedded one reaches the workers (through the object store)."""
    model = MODEL_FILES["v3"]
    if not model.exists():
        pytest.skip("../shared/vocab is not there")
    tok = bpetok.Tokenizer.from_file(model)
    options = dict(OPTIONS, partition_size="1MiB")
    single = bpetok.pack(corpus[:2], tmp_path / "single", tokenizer=tok, **options)
    bpetok.ray.pack(corpus[:2], tmp_path / "ray", tokenizer=tok, progress=False, **options)
    assert_same_tree(tmp_path / "ray", tmp_path / "single")
    assert json.loads((tmp_path / "ray" / "manifest.json").read_text())["tokenizer"]["vocab_size"] == 32768
    assert single.documents > 0


def test_remote_inputs_by_url(cluster: Cluster, corpus: list[Path], reference: Path, tmp_path: Path) -> None:
    """Inputs named by URL: workers copy the part of each file they read (here through
    pyarrow's local file system); the shards are those of the local run, the manifest names the
    URLs."""
    urls = [f"file://{p}" for p in corpus]
    bpetok.ray.pack(urls, tmp_path / "out", partition_size=PARTITION_SIZE, progress=False, **OPTIONS)
    got = json.loads((tmp_path / "out" / "manifest.json").read_text())
    expected = json.loads((reference / "manifest.json").read_text())
    assert [i["path"] for i in got["inputs"]] == [f"file://{i['path']}" for i in expected["inputs"]]
    for key in ("shards", "totals", "partitions", "options"):
        assert got[key] == expected[key]
    digests = [(i["size"], i["sha256"]) for i in expected["inputs"]]
    assert [(i["size"], i["sha256"]) for i in got["inputs"]] == digests


def _kill_when(condition: Any, action: Any, timeout: float = 60.0) -> threading.Thread:
    """Runs ``action`` once ``condition`` holds, in a thread; an action that returns False found
    nothing to act on (the task it saw ended in between) and the watch goes on."""

    def run() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition() and action() is not False:
                return
            time.sleep(0.002)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_worker_killed_mid_task(
    cluster: Cluster, corpus: list[Path], reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    killed: list[int] = []

    def kill() -> bool:
        for pid in task_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            killed.append(pid)
        return bool(killed)

    watcher = _kill_when(lambda: temporaries(out) and task_pids(), kill)
    reports: list[dict[str, Any]] = []
    bpetok.ray.pack(
        corpus, out, partition_size=PARTITION_SIZE, progress=False, on_partition=reports.append, **OPTIONS
    )
    watcher.join()
    assert killed, "no task was running to be killed"
    assert_same_tree(out, reference)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in killed)
    names = [r["name"] for r in reports]
    partitions = json.loads((reference / "manifest.json").read_text())["partitions"]
    assert len(names) == len(set(names)) == len(partitions)


def test_node_removed_mid_run(cluster: Cluster, corpus: list[Path], reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    node = worker_nodes(cluster)[-1]
    removed: list[bool] = []

    def remove() -> None:
        cluster.remove_node(node, allow_graceful=False)
        removed.append(True)

    watcher = _kill_when(lambda: len(temporaries(out)) >= 2, remove)
    try:
        reports: list[dict[str, Any]] = []
        bpetok.ray.pack(
            corpus, out, partition_size=PARTITION_SIZE, progress=False, on_partition=reports.append, **OPTIONS
        )
        watcher.join()
        assert removed, "the run ended before the node could be removed"
        assert_same_tree(out, reference)
    finally:
        watcher.join()
        if removed:
            cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()


DRIVER = """
import sys, ray, bpetok.ray
ray.init(address=sys.argv[1], log_to_driver=False)
bpetok.ray.pack(sys.argv[3:], sys.argv[2], partition_size={size!r}, progress=False, **{options!r})
"""


def test_driver_killed_then_resumed(
    cluster: Cluster, corpus: list[Path], reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(size=PARTITION_SIZE, options=OPTIONS))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    driver = subprocess.Popen(
        [sys.executable, str(script), cluster.address, str(out), *map(str, corpus)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    total = len(json.loads((reference / "manifest.json").read_text())["partitions"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and driver.poll() is None:
        done = [n for n in os.listdir(out) if n.startswith("part-")] if out.exists() else []
        if len(done) >= 2:
            driver.kill()
            break
        time.sleep(0.002)
    driver.wait()
    assert driver.returncode == -signal.SIGKILL, "the driver ended before it could be killed"
    assert not (out / "manifest.json").exists()
    kept = sorted(n for n in os.listdir(out) if n.startswith("part-"))
    assert 2 <= len(kept) < total
    # Without resume the directory is refused; with it only the rest is packed.
    with pytest.raises(bpetok.ShardError):
        bpetok.ray.pack(corpus, out, partition_size=PARTITION_SIZE, progress=False, **OPTIONS)
    reports: list[dict[str, Any]] = []
    result = bpetok.ray.pack(
        corpus,
        out,
        partition_size=PARTITION_SIZE,
        progress=False,
        resume=True,
        on_partition=reports.append,
        **OPTIONS,
    )
    packed = {r["name"] for r in reports if not r["already_complete"]}
    assert packed.isdisjoint(kept[: len(kept) - 1])  # (the last may have been renamed as it was killed)
    assert result.resumed is not None and result.resumed.shards > 0
    assert_same_tree(out, reference)
    # A finished run resumed again is reported complete and left as it is.
    again = bpetok.ray.pack(
        corpus, out, partition_size=PARTITION_SIZE, progress=False, resume=True, **OPTIONS
    )
    assert again.resumed is not None and again.resumed.complete
    assert_same_tree(out, reference)


def test_an_input_error_stops_the_run_with_its_location(cluster: Cluster, tmp_path: Path) -> None:
    """A bad record is the worker's bpetok.InputError, raised on the driver as it is (kind, file,
    line), not retried; no manifest is written."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": 5}\n')
    good = write_jsonl(tmp_path / "good.jsonl", 50, 2)
    with pytest.raises(bpetok.InputError) as caught:
        bpetok.ray.pack([good, bad], tmp_path / "out", partition_size="1KiB", progress=False, **OPTIONS)
    assert caught.value.kind == "not_a_string" and caught.value.line == 2
    assert str(bad) in str(caught.value)
    assert not (tmp_path / "out" / "manifest.json").exists()


# --- Ray Data ---------------------------------------------------------------------------------


def texts_for_ray_data() -> list[str | None]:
    rng = np.random.default_rng(7)
    texts: list[str | None] = ["", " ", "  leading spaces", "trailing  ", "\n\t", "日本語の文", "😀" * 5]
    texts += [" ".join(rng.choice(WORDS, size=int(rng.integers(0, 300)))) for _ in range(500)]
    texts += [None, "after a null"]
    return texts


@pytest.mark.parametrize("large", [False, True], ids=["string", "large_string"])
def test_tokenize_in_map_batches(cluster: Cluster, large: bool) -> None:
    texts = texts_for_ray_data()
    table = pa.table({"text": pa.array(texts, type=pa.large_string() if large else pa.string())})
    blocks = [table.slice(k, 130) for k in range(0, len(table), 130)]
    ds = ray.data.from_arrow(blocks).map_batches(
        bpetok.ray.Tokenize,
        batch_format="pyarrow",
        batch_size=64,
        concurrency=2,
        fn_constructor_kwargs={"add_bos": True},
    )
    out = ds.to_arrow_refs()
    result = pa.concat_tables(ray.get(out))
    assert result.schema.field("ids").type == pa.list_(pa.uint16())
    pairs = list(zip(result.column("text").to_pylist(), result.column("ids").to_pylist(), strict=True))
    assert len(pairs) == len(texts)
    by_text = sorted((t if t is not None else "\0null", ids) for t, ids in pairs)
    expected = sorted(
        (t if t is not None else "\0null", None if t is None else bpetok.encode(t, add_bos=True))
        for t in texts
    )
    assert by_text == expected


def test_tokenize_directly_on_slices_and_v3() -> None:
    """The callable on its own: sliced arrays (non-zero offset), several chunks, the v3
    vocabulary, and clear errors for what it cannot take."""
    model = MODEL_FILES["v3"]
    if not model.exists():
        pytest.skip("../shared/vocab is not there")
    tok = bpetok.Tokenizer.from_file(model)
    texts = [t for t in texts_for_ray_data() if t is not None]
    chunked = pa.chunked_array([pa.array(texts[:100]), pa.array(texts[100:]).slice(3, 200)])
    table = pa.table({"text": chunked})
    result = bpetok.ray.Tokenize(tokenizer=model, add_eos=True)(table)
    expected = [tok.encode(t, add_eos=True) for t in texts[:100] + texts[103:303]]
    assert result.column("ids").to_pylist() == expected
    assert result.column("ids").type == pa.list_(pa.uint16())
    with pytest.raises(TypeError, match="pyarrow"):
        bpetok.ray.Tokenize()({"text": np.array(["a"])})
    with pytest.raises(KeyError, match="body"):
        bpetok.ray.Tokenize(column="body")(table)
    with pytest.raises(TypeError, match="not strings"):
        bpetok.ray.Tokenize()(pa.table({"text": pa.array([1, 2])}))
    with pytest.raises(ValueError, match="already has"):
        bpetok.ray.Tokenize(output_column="text")(table)


@pytest.mark.parametrize("name", ["en", "code", "ja", "zh", "multi"])
def test_tokenize_on_the_test_corpora(cluster: Cluster, name: str) -> None:
    """On the real-text corpora (``$BPETOK_CORPORA``, built by ``.ci/run``), through
    ``map_batches`` with both vocabularies: exactly ``bpetok.encode``'s ids."""
    from test_parity_corpora import corpora_dir

    path = corpora_dir() / f"{name}.jsonl"
    if not path.is_file() or not path.stat().st_size:
        pytest.skip(f"{path} is not built (.ci/run builds it)")
    texts: list[str] = []
    size = 0
    with path.open(encoding="utf-8") as f:
        for line in f:
            texts.append(json.loads(line)["text"])
            size += len(line)
            if size > 1_000_000:
                break
    table = pa.table({"text": texts})
    step = max(1, len(table) // 4)  # at least as many blocks as actors
    blocks = [table.slice(k, step) for k in range(0, len(table), step)]
    models: list[Any] = [None]
    if MODEL_FILES["v3"].exists():
        models.append(str(MODEL_FILES["v3"]))
    for model in models:
        tok = bpetok.Tokenizer.default() if model is None else bpetok.Tokenizer.from_file(model)
        ds = ray.data.from_arrow(blocks).map_batches(
            bpetok.ray.Tokenize,
            batch_format="pyarrow",
            batch_size=64,
            concurrency=2,
            fn_constructor_kwargs={"tokenizer": model},
        )
        result = pa.concat_tables(ray.get(ds.to_arrow_refs()))
        got = sorted(zip(result.column("text").to_pylist(), result.column("ids").to_pylist(), strict=True))
        expected = sorted(zip(texts, tok.encode_batch(texts), strict=True))
        assert got == expected
