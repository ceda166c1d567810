"""``bpetok`` on a Ray cluster (install with ``pip install 'bpetok[ray]'``; ``docs/distributed.md``).

- :func:`pack` tokenizes and packs a corpus with one Ray task per partition, on whatever cluster
  ``ray.init()`` connects to, and writes exactly the directory that ``bpetok pack
  --partition-size`` writes on one machine for the same inputs and options.
- :class:`Tokenize` is a callable class for ``ray.data.Dataset.map_batches`` that adds a column
  of token ids (Arrow ``list<uint16>`` or ``list<uint32>``) to batches with a text column, the
  ids of :func:`bpetok.encode`, without a Python ``str`` or ``list`` per row.

Partitions are packed by the same Rust core as the command line (``bpetok::data::partition``).
Each worker writes its partition under a temporary directory of its own and renames it into
place, so a task retried after a killed worker or a lost node never leaves half a partition or a
second copy; the manifest of the whole run is written last, on the driver.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from bpetok import _bpetok
from bpetok._data import (
    InputFormat,
    PackResult,
    PathArg,
    Utf8Errors,
    _paths,
    _tokenizer,
    pack_options,
    pack_result,
)
from bpetok._tokenizer import Tokenizer, _default_tokenizer

if TYPE_CHECKING:
    import pyarrow as pa  # type: ignore[import-untyped]

    from bpetok._chat import ChatFormat, TrainOn

__all__ = ["Tokenize", "pack"]

DEFAULT_PARTITION_SIZE = "256MiB"
"""The partition size :func:`pack` cuts inputs by unless told otherwise."""


def _ray() -> Any:
    try:
        import ray
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("bpetok.ray needs Ray: pip install 'bpetok[ray]'") from err
    return ray


# --- the tokenizer, once per worker process -------------------------------------------------

_WORKER_TOKENIZERS: dict[str, Tokenizer] = {}
"""The tokenizers this process has loaded, by the SHA-256 of their model: a worker process runs
many tasks and loads each model once."""


def _worker_tokenizer(sha256: str, model: list[Any]) -> tuple[Tokenizer, bool]:
    """The tokenizer of this SHA-256, and whether this call loaded it."""
    tok = _WORKER_TOKENIZERS.get(sha256)
    loaded = tok is None
    if tok is None:
        if model[0] is None:
            tok = _default_tokenizer()
        else:
            data = model[0] if isinstance(model[0], bytes) else _ray().get(model[0])
            tok = Tokenizer.from_bytes(data)
        _WORKER_TOKENIZERS[sha256] = tok
    return tok, loaded


# --- files named by URL -----------------------------------------------------------------------


def _is_url(path: str) -> bool:
    return "://" in path


def _filesystem(url: str) -> tuple[Any, str]:
    """A ``pyarrow.fs`` file system and the path in it for ``url`` (fsspec's protocols too,
    when fsspec is installed)."""
    import pyarrow.fs as pafs  # type: ignore[import-untyped]

    try:
        fs, path = pafs.FileSystem.from_uri(url)
        return fs, str(path)
    except (ValueError, TypeError, OSError) as arrow_error:
        try:
            import fsspec  # type: ignore[import-untyped]
        except ImportError:
            raise ValueError(f"{url}: no pyarrow file system for this URL ({arrow_error})") from None
        fs, path = fsspec.core.url_to_fs(url)
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def _url_of(url: str, fs_path: str, root: str) -> str:
    """The URL of ``fs_path``, a file found under ``root`` (the path of ``url``)."""
    if fs_path == root:
        return url
    rel = fs_path[len(root) :].lstrip("/")
    return url.rstrip("/") + "/" + rel


def _remote_inputs(urls: list[str], input_format: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The files the URLs name (a directory's files as ``resolve_inputs`` finds them: sorted by
    path components, hidden names skipped, those whose name says their format) and their
    layouts (size, Parquet row group sizes)."""
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    names: list[str] = []
    layouts: list[dict[str, Any]] = []
    for url in urls:
        fs, path = _filesystem(url)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"{url}: no such file or directory")
        if info.type == pafs.FileType.Directory:
            found = []
            for entry in fs.get_file_info(pafs.FileSelector(path, recursive=True)):
                if entry.type != pafs.FileType.File:
                    continue
                rel = entry.path[len(path) :].lstrip("/")
                parts = rel.split("/")
                if any(part.startswith(".") for part in parts):
                    continue
                if input_format == "auto" and _bpetok.input_kind(parts[-1]) is None:
                    continue
                found.append((parts, entry))
            if not found:
                raise FileNotFoundError(f"{url}: the directory holds no input files")
            found.sort(key=lambda item: [p.encode("utf-8", "surrogatepass") for p in item[0]])
            entries = [(_url_of(url, e.path, path), e) for _, e in found]
        else:
            entries = [(url, info)]
        for name, entry in entries:
            layout: dict[str, Any] = {"size": entry.size, "row_groups": None}
            kind = _bpetok.input_kind(name.rsplit("/", 1)[-1])
            is_parquet = input_format == "parquet" or (
                input_format == "auto" and kind is not None and kind[0] == "parquet"
            )
            plain = kind is None or kind[1] == "file"
            if is_parquet and plain:
                with fs.open_input_file(entry.path) as f:
                    meta = pq.ParquetFile(f).metadata
                    layout["row_groups"] = [
                        meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)
                    ]
            names.append(name)
            layouts.append(layout)
    return names, layouts


def _copy_piece(piece: dict[str, Any], directory: str) -> str:
    """A local copy of what a piece of a remote file needs, at the same offsets (a sparse file):
    for a byte range, from the byte before it to the end of the line that crosses its end;
    otherwise the whole file."""
    fs, path = _filesystem(piece["path"])
    local = os.path.join(directory, f"piece-{uuid.uuid4().hex}")
    chunk = 1 << 20
    with fs.open_input_file(path) as src, open(local, "wb") as dst:
        byte_range = (piece.get("range") or {}).get("bytes")
        if byte_range is None:
            while block := src.read(chunk):
                dst.write(block)
            return local
        start, end = byte_range
        begin = max(start - 1, 0)
        src.seek(begin)
        dst.seek(begin)
        position = begin
        # The reader stops after the first newline at offset end - 1 or later (or at the end).
        while block := src.read(chunk):
            newline = block.find(b"\n", max(0, end - 1 - position))
            if newline >= 0:
                dst.write(block[: newline + 1])
                break
            dst.write(block)
            position += len(block)
    return local


# --- the task ---------------------------------------------------------------------------------


def _pack_task(
    sha256: str,
    model: list[Any],
    output: str,
    partition: str,
    options: dict[str, Any],
) -> dict[str, Any]:
    """One partition, on a worker: ``output/NAME/`` written through a temporary directory of
    this attempt's own, renamed into place (a copy already there wins)."""
    tok, loaded = _worker_tokenizer(sha256, model)
    pieces = json.loads(partition)["pieces"]
    start = time.perf_counter()
    if not any(_is_url(p["path"]) for p in pieces):
        report = _bpetok.pack_partition(tok._core, output, partition, options, attempt=uuid.uuid4().hex)
    else:
        with tempfile.TemporaryDirectory(prefix="bpetok-ray-") as scratch:
            local = [_copy_piece(p, scratch) if _is_url(p["path"]) else p["path"] for p in pieces]
            report = _bpetok.pack_partition(
                tok._core, output, partition, options, local=local, attempt=uuid.uuid4().hex
            )
    report["seconds"] = time.perf_counter() - start
    report["pid"] = os.getpid()
    report["node"] = _ray().get_runtime_context().get_node_id()
    report["loaded_tokenizer"] = loaded
    return report


def pack(
    inputs: Sequence[PathArg] | PathArg,
    output: PathArg,
    *,
    seq_len: int,
    window: int,
    partition_size: int | str = DEFAULT_PARTITION_SIZE,
    overlap: int | None = None,
    pack_buffer: int = _bpetok.DEFAULT_PACK_BUFFER,
    seed: int = 0,
    pad_id: int | None = None,
    samples_per_shard: int = _bpetok.DEFAULT_SAMPLES_PER_SHARD,
    bos: bool = True,
    eos: bool = True,
    field: str = "text",
    lines: bool = False,
    errors: Utf8Errors = "strict",
    input_format: InputFormat = "auto",
    skip_bad_records: bool = False,
    overwrite: bool = False,
    resume: bool = False,
    tokenizer: Tokenizer | None = None,
    chat: ChatFormat | None = None,
    train_on: TrainOn = "assistant",
    num_cpus: int = 1,
    max_retries: int = 3,
    progress: bool = True,
    on_partition: Callable[[dict[str, Any]], object] | None = None,
) -> PackResult:
    """Packs ``inputs`` into training shards in ``output`` on a Ray cluster: one task per
    partition (``num_cpus`` CPUs and encoding threads each), the result byte for byte that of
    ``bpetok pack --partition-size`` (:func:`bpetok.pack` with ``partition_size``) with the same
    inputs and options, whatever the number of workers or nodes.

    ``inputs`` are local paths (visible to every worker: a shared file system on a real cluster)
    or URLs of any ``pyarrow.fs`` file system (``s3://``, ``gs://``, ``hdfs://``, ``file://``;
    fsspec's protocols when fsspec is installed), files or directories; workers read the part of
    a remote file their partition needs. ``output`` is a directory every worker can write (local,
    or a shared file system): each partition is renamed into place there, and the manifest is
    written last. The other options are those of :func:`bpetok.pack`.

    A task whose worker process dies or whose node is lost is run again by Ray (up to
    ``max_retries`` times); an error of the inputs (:class:`bpetok.InputError`) is not retried
    and stops the run. After the driver itself was killed, ``resume=True`` packs only the
    partitions that were not complete (``resumed.shards`` of the result counts the shards kept).
    Connects with ``ray.init()`` if Ray is not initialised.

    ``on_partition`` is called on the driver with a dict for each partition as it finishes:
    ``name``, ``documents``, ``samples``, ``input_bytes``, ``seconds`` (on the worker),
    ``already_complete`` (kept from an earlier run), ``lost_race`` (another attempt's copy was
    in place first), ``pid`` and ``node`` of the worker, ``loaded_tokenizer`` (this task loaded
    the model: once per worker process).
    """
    ray = _ray()
    tok = _tokenizer(tokenizer)
    options = pack_options(
        seq_len=seq_len,
        window=window,
        overlap=overlap,
        pack_buffer=pack_buffer,
        seed=seed,
        pad_id=pad_id,
        samples_per_shard=samples_per_shard,
        bos=bos,
        eos=eos,
        field=field,
        lines=lines,
        errors=errors,
        input_format=input_format,
        skip_bad_records=skip_bad_records,
        overwrite=overwrite,
        resume=resume,
        num_threads=num_cpus,
        chat=chat,
        train_on=train_on,
        partition_size=partition_size,
    )
    out = os.fspath(output)
    if _is_url(out) and not out.startswith("file://"):
        raise ValueError(
            f"output {out!r}: bpetok.ray.pack writes to a directory every worker can rename files in "
            "(local, or a shared file system), not to object storage"
        )
    if out.startswith("file://"):
        out = out[len("file://") :]
    started = time.perf_counter()
    names = _paths(inputs)
    if any(_is_url(n) for n in names):
        names, layouts = _remote_inputs(names, options["input_format"])
        plan_json = _bpetok.plan_partitions(
            names,
            input_format=options["input_format"],
            lines=options["lines"],
            partition_size=options["partition_size"],
            layouts=json.dumps(layouts),
        )
    else:
        plan_json = _bpetok.plan_partitions(
            names,
            input_format=options["input_format"],
            lines=options["lines"],
            partition_size=options["partition_size"],
        )
    partitions = json.loads(plan_json)
    done = _bpetok.prepare_partitioned(tok._core, out, plan_json, options)
    if done is not None:
        return pack_result(done, time.perf_counter() - started)
    # Workers pack fresh partitions (a complete one is kept, whatever the options say).
    worker_options = dict(options, resume=False, overwrite=False)
    if not ray.is_initialized():
        ray.init()
    model: list[Any] = [None] if tok is _default_tokenizer() else [ray.put(tok.model_bytes)]
    task = ray.remote(_pack_task).options(num_cpus=num_cpus, max_retries=max_retries, retry_exceptions=False)
    pending = {task.remote(tok.sha256, model, out, json.dumps(p), worker_options): p for p in partitions}
    total = sum(piece["size"] for p in partitions for piece in p["pieces"])
    kept_shards = kept_samples = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]

        bar = tqdm(
            total=total, unit="B", unit_scale=True, desc=f"bpetok.ray.pack {len(partitions)} partitions"
        )
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                partition = pending.pop(ref)
                try:
                    task_report = ray.get(ref)
                except ray.exceptions.RayTaskError as err:
                    cause = err.cause if isinstance(getattr(err, "cause", None), BaseException) else None
                    if cause is not None:
                        raise cause from None
                    raise
                if task_report["already_complete"]:
                    kept_shards += task_report["shards"]
                    kept_samples += task_report["samples"]
                if on_partition is not None:
                    on_partition(task_report)
                if bar is not None:
                    bar.update(sum(piece["size"] for piece in partition["pieces"]))
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    report = _bpetok.finish_partitions(tok._core, out, plan_json, options)
    if resume and kept_shards + kept_samples > 0:
        report["resumed"] = {"shards": kept_shards, "samples": kept_samples, "complete": False}
    return pack_result(report, time.perf_counter() - started)


# --- Ray Data ---------------------------------------------------------------------------------


class Tokenize:
    """A callable class for ``ray.data.Dataset.map_batches(Tokenize, batch_format="pyarrow",
    fn_constructor_kwargs={...}, concurrency=N)``: adds ``output_column`` with the ids of
    ``column``'s texts, exactly :func:`bpetok.encode`'s (``add_bos`` / ``add_eos`` as there), as
    an Arrow ``list<uint16>`` (vocabularies of at most 65,536 pieces) or ``list<uint32>``. Each
    actor loads the tokenizer once (``tokenizer``: a :class:`bpetok.Tokenizer`, a model path, or
    ``None`` for the embedded Mixtral vocabulary). Texts go from the Arrow buffers to the encoder
    and the ids back into Arrow buffers, with no Python object per row. A null text gives a null
    list."""

    def __init__(
        self,
        column: str = "text",
        output_column: str = "ids",
        *,
        tokenizer: Tokenizer | PathArg | None = None,
        add_bos: bool = False,
        add_eos: bool = False,
        num_threads: int = 1,
    ) -> None:
        if tokenizer is None:
            tok = _default_tokenizer()
        elif isinstance(tokenizer, Tokenizer):
            tok = tokenizer
        else:
            tok = Tokenizer.from_file(tokenizer)
        tok._check_flags(add_bos, add_eos)
        self._tok = tok
        self.column = column
        self.output_column = output_column
        self.add_bos = add_bos
        self.add_eos = add_eos
        self.num_threads = num_threads

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        if not isinstance(batch, pa.Table):
            raise TypeError(
                "Tokenize takes pyarrow batches (map_batches(..., batch_format='pyarrow')), "
                f"got {type(batch).__name__}"
            )
        if self.column not in batch.column_names:
            raise KeyError(f"the batch has no column {self.column!r} (it has {batch.column_names})")
        if self.output_column in batch.column_names:
            raise ValueError(f"the batch already has a column {self.output_column!r}")
        texts = batch.column(self.column)
        chunks = [self.encode_array(chunk) for chunk in texts.chunks]
        value_type = pa.uint16() if self._tok.dtype.itemsize == 2 else pa.uint32()
        column = pa.chunked_array(chunks, type=pa.list_(value_type))
        return batch.append_column(self.output_column, column)

    def encode_array(self, texts: pa.Array) -> pa.Array:
        """The ids of one Arrow ``string`` / ``large_string`` array, as a ``list`` array."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc  # type: ignore[import-untyped]

        offset_type: np.dtype[Any]
        if pa.types.is_string(texts.type):
            offset_type = np.dtype("<i4")
        elif pa.types.is_large_string(texts.type):
            offset_type = np.dtype("<i8")
        else:
            raise TypeError(f"column {self.column!r} holds {texts.type}, not strings")
        mask = None
        if texts.null_count:
            mask = texts.is_null()
            texts = pc.fill_null(texts, "")
        n = len(texts)
        _, offsets_buf, data_buf = texts.buffers()
        offsets = np.frombuffer(offsets_buf, dtype=offset_type)[texts.offset : texts.offset + n + 1].astype(
            "<i8"
        )
        first, last = (int(offsets[0]), int(offsets[-1])) if n else (0, 0)
        data = b"" if data_buf is None or last == first else data_buf.slice(first, last - first).to_pybytes()
        ids, ends = self._tok._core.encode_offsets_flat(
            data, (offsets - first).tobytes(), self.add_bos, self.add_eos, self.num_threads
        )
        values = pa.array(np.frombuffer(ids, dtype=self._tok.dtype))
        ends_array = np.frombuffer(ends, dtype="<i8")
        if ends_array[-1] >= 1 << 31:
            raise ValueError("more than 2^31 - 1 ids in one batch: use smaller batches (batch_size=)")
        return pa.ListArray.from_arrays(pa.array(ends_array.astype("<i4")), values, mask=mask)
