"""The ``bpetok`` command line: argument parsing, the subcommands, and what they share.

A subcommand is one ``run_NAME(args) -> int`` function plus one ``_NAME_arguments(parser)``
setup function, listed in :data:`SUBCOMMANDS`. What every subcommand shares lives here too:
global options (``--vocab``, ``--quiet``, ``--json``, ``--threads``), input options
(:func:`add_input_arguments`, :func:`open_inputs`), atomic output (:class:`AtomicOutput`),
the progress bar (:class:`Progress`), the summary (:func:`report`), and the error policy of
:func:`main`: an expected error is one line ``bpetok: error: ...`` on stderr and exit status 1
(2 for usage errors, 130 on Ctrl-C), never a traceback. ``docs/cli.md`` describes the result.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

from bpetok.inputs import (
    FORMATS,
    Document,
    InputError,
    InputFile,
    InputReader,
    jsonl_line_document,
)

if TYPE_CHECKING:
    from bpetok import Tokenizer

PROG = "bpetok"
BATCH_CHARS = 4 << 20
"""Characters of text per ``encode_batch`` call: large enough that the per-call overhead and
thread start-up vanish, small enough that two batches in flight stay a few tens of MB."""
BATCH_RECORDS = 4096
"""Records per ``decode_batch`` call."""


class CliError(Exception):
    """An expected failure: ``main`` prints ``bpetok: error: MESSAGE`` and exits with ``status``."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# ---- shared pieces ---------------------------------------------------------------------------


def _int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "positive")
_non_negative_int = _int_at_least(0, "non-negative")


def _add_global_arguments(parser: argparse.ArgumentParser, default: Any) -> None:
    """The global options; accepted before and after the subcommand name."""
    group = parser.add_argument_group("global options")
    group.add_argument(
        "--vocab",
        metavar="MODEL",
        default=default,
        help="SentencePiece .model file (default: the embedded Mistral 7B / Mixtral 8x7B vocabulary)",
    )
    group.add_argument(
        "--threads",
        metavar="N",
        type=_positive_int,
        default=default,
        help="encoding threads (default: every CPU this process may use)",
    )
    group.add_argument(
        "--quiet", action="store_true", default=default, help="no progress bar and no summary on stderr"
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default,
        help="print the summary as one JSON object (on stdout, or on stderr when stdout is the output)",
    )


def add_input_arguments(parser: argparse.ArgumentParser, *, field: bool = True) -> None:
    """``INPUT...`` and the options saying how to read them (see :mod:`bpetok.inputs`)."""
    parser.add_argument(
        "inputs",
        metavar="INPUT",
        nargs="+",
        help="files, directories (walked in sorted order) or - for stdin",
    )
    if field:
        parser.add_argument(
            "--field", default="text", help="JSONL field / Parquet column holding the text (default: text)"
        )
        parser.add_argument(
            "--lines", action="store_true", help="in text files, every non-empty line is a document"
        )
    parser.add_argument(
        "--input-format",
        choices=FORMATS,
        default="auto",
        help="how to read every input (default: auto, from the file name; stdin is JSONL)",
    )
    parser.add_argument(
        "--errors",
        choices=("strict", "replace"),
        default="strict",
        help="invalid UTF-8 (and lone surrogates in JSON): an error (strict, the default) "
        "or U+FFFD (replace)",
    )


def open_inputs(args: argparse.Namespace, progress: Progress | None = None) -> InputReader:
    """The :class:`InputReader` for the input arguments, reporting bytes read to ``progress``."""
    reader = InputReader(
        args.inputs,
        field=getattr(args, "field", "text"),
        lines=getattr(args, "lines", False),
        errors=args.errors,
        input_format=args.input_format,
        on_bytes=progress.add_bytes if progress is not None else None,
    )
    if progress is not None:
        progress.set_total(reader.total_size)
    return reader


def load_tokenizer(args: argparse.Namespace) -> Tokenizer:
    """The tokenizer of ``--vocab``, or the embedded one."""
    from bpetok import ModelError, Tokenizer

    if args.vocab is None:
        return Tokenizer.default()
    try:
        return Tokenizer.from_file(args.vocab)
    except ModelError as err:
        raise CliError(str(err)) from None
    except OSError as err:
        raise CliError(f"{args.vocab}: {err.strerror or err}") from None


_TEMPORARIES: list[str] = []
"""Temporary output files made by this process; :func:`main` removes those still there when it
ends, so an interrupt at any point (even before a writer's cleanup is armed) leaves none."""


def temp_beside(path: str) -> str:
    """A new empty file in ``path``'s directory, with the permissions a new file gets,
    registered for removal if the command does not rename it into place."""
    directory, base = os.path.split(os.path.abspath(path))
    umask = os.umask(0)
    os.umask(umask)
    for _ in range(100):
        temp = os.path.join(directory, f".{base}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
        _TEMPORARIES.append(temp)  # before it exists: no moment where it exists unregistered
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 & ~umask))
            return temp
        except FileExistsError:
            _TEMPORARIES.pop()
    raise FileExistsError(f"{directory}: cannot make a temporary file")


def _remove_temporaries() -> None:
    while _TEMPORARIES:
        try:
            os.remove(_TEMPORARIES.pop())
        except FileNotFoundError:
            pass  # renamed into place, or removed by its writer


class AtomicOutput:
    """A binary output: a file written under a temporary name in its directory and renamed over
    ``path`` by :meth:`commit`, or stdout when ``path`` is None or ``-``. :meth:`abort` (or
    leaving a ``with`` block by an exception) removes the temporary file, so an output that
    exists under its name is complete."""

    def __init__(self, path: str | None) -> None:
        self.path = None if path in (None, "-") else path
        self._temp: str | None = None
        if self.path is None:
            self.stream: IO[bytes] = sys.stdout.buffer
        else:
            try:
                self._temp = temp_beside(self.path)
            except OSError as err:
                raise CliError(f"{self.path}: cannot write here: {err.strerror or err}") from None
            self.stream = open(self._temp, "wb", buffering=1 << 20)

    @property
    def is_stdout(self) -> bool:
        return self.path is None

    def commit(self) -> None:
        if self._temp is None:
            self.stream.flush()
            return
        self.stream.close()
        assert self.path is not None
        os.replace(self._temp, self.path)
        self._temp = None

    def abort(self) -> None:
        if self._temp is None:
            return
        self.stream.close()
        try:
            os.remove(self._temp)
        except FileNotFoundError:
            pass
        self._temp = None

    def __enter__(self) -> AtomicOutput:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class Progress:
    """A tqdm bar of raw input bytes with documents and tokens, on a terminal only.

    Disabled (every method a no-op) with ``--quiet`` or when stderr is not a terminal.
    """

    def __init__(self, args: argparse.Namespace, description: str) -> None:
        self._bar: Any = None
        if args.quiet or not sys.stderr.isatty():
            return
        try:
            tqdm = importlib.import_module("tqdm").tqdm
        except ImportError:  # a broken install: go on without a bar
            return
        self._bar = tqdm(
            desc=description,
            unit="B",
            unit_scale=True,
            unit_divisor=1000,
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=0.25,
            delay=0.5,  # nothing for runs shorter than that; the total is known by then
            smoothing=0.1,
        )

    def set_total(self, total: int | None) -> None:
        if self._bar is not None and total is not None:
            self._bar.total = total
            self._bar.refresh()

    def add_bytes(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def set_counts(self, documents: int, tokens: int) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(f"{documents:,} docs, {tokens:,} tokens", refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def report(args: argparse.Namespace, summary: dict[str, Any], *, output_on_stdout: bool) -> None:
    """Prints the summary: one line on stderr (not with ``--quiet``), or with ``--json`` one JSON
    object on stdout (on stderr when stdout carries the command's output)."""
    if args.json:
        stream = sys.stderr if output_on_stdout else sys.stdout
        stream.write(json.dumps(summary, sort_keys=True) + "\n")
        stream.flush()
        return
    if args.quiet:
        return
    seconds = summary.get("seconds", 0.0)
    megabytes = summary.get("input_bytes", 0) / 1e6
    parts = [f"{summary['documents']:,} documents"]
    if "tokens" in summary:
        parts.append(f"{summary['tokens']:,} tokens")
    parts.append(f"{megabytes:,.1f} MB in {seconds:.2f} s ({summary.get('mb_per_s', 0.0):,.1f} MB/s)")
    where = f" -> {summary['output']}" if summary.get("output") else ""
    sys.stderr.write(f"{PROG} {summary['command']}: {', '.join(parts)}{where}\n")


def _throughput(input_bytes: int, seconds: float) -> float:
    return round(input_bytes / 1e6 / seconds, 3) if seconds > 0 else 0.0


def _batches(documents: Iterable[Document], max_chars: int) -> Iterator[list[Document]]:
    batch: list[Document] = []
    chars = 0
    for doc in documents:
        batch.append(doc)
        chars += len(doc.text)
        if chars >= max_chars:
            yield batch
            batch = []
            chars = 0
    if batch:
        yield batch


def _line_fallback(args: argparse.Namespace) -> Callable[[str, int, str], str | None]:
    """The verdict of the Python reader on a JSONL line the Rust reader does not take (see
    :func:`jsonl_line_document`), with the command's ``--field`` and ``--errors``."""
    field, errors = args.field, args.errors

    def fallback(name: str, lineno: int, text: str) -> str | None:
        return jsonl_line_document(name, lineno, text, field, errors)

    return fallback


def _encode_in_python(
    args: argparse.Namespace,
    files: list[InputFile],
    progress: Progress,
    tally: _Tally,
    encode: Callable[[list[str]], Any],
    tokens_of: Callable[[Any], int],
) -> Iterator[Any]:
    """``encode(texts)`` of batches of the documents of ``files`` (Parquet, read by
    :class:`InputReader`), in order, each batch encoded on a worker thread while the next is read.
    (Parquet strings are UTF-8, so no lone surrogate reaches ``encode``: those come from JSON
    escapes, which the Rust reader and :func:`jsonl_line_document` handle.)"""
    reader = InputReader.from_files(
        files, field=args.field, lines=args.lines, errors=args.errors, on_bytes=progress.add_bytes
    )

    def work(batch: list[Document]) -> Any:
        return encode([d.text for d in batch])

    for batch, result in _pipelined(_batches(reader.documents(), BATCH_CHARS), work):
        yield result
        tally.documents += len(batch)
        tally.tokens += tokens_of(result)
        progress.set_counts(tally.documents, tally.tokens)


def _pipelined(
    batches: Iterable[list[Document]], work: Callable[[list[Document]], Any]
) -> Iterator[tuple[list[Document], Any]]:
    """``(batch, work(batch))`` in order, ``work`` of one batch running on a worker thread while
    this thread reads the next batch and the caller writes the previous result (the encoder
    releases the GIL, so reading, encoding and writing overlap)."""
    from concurrent.futures import Future, ThreadPoolExecutor  # here: `bpetok pack` seldom needs it

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bpetok-encode") as pool:
        pending: tuple[list[Document], Future[Any]] | None = None
        try:
            for batch in batches:
                submitted = (batch, pool.submit(work, batch))
                if pending is not None:
                    yield pending[0], pending[1].result()
                pending = submitted
            if pending is not None:
                yield pending[0], pending[1].result()
                pending = None
        finally:
            if pending is not None:
                pending[1].cancel()


# ---- encode ----------------------------------------------------------------------------------


def _encode_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser)
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="output file (default: stdout); with --format megatron the PREFIX of PREFIX.bin / PREFIX.idx",
    )
    parser.add_argument(
        "--format",
        choices=("jsonl", "megatron"),
        default="jsonl",
        help='jsonl: one {"ids": [...]} per document (default); megatron: Megatron-LM .bin/.idx',
    )
    parser.add_argument(
        "--bos",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="start each document with <s> (default: no)",
    )
    parser.add_argument(
        "--eos",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="end each document with </s> (default: no)",
    )


def run_encode(args: argparse.Namespace) -> int:
    """Text to token ids, as JSONL or Megatron-LM files; one output record per document."""
    if args.format == "megatron":
        if args.output in (None, "-"):
            raise CliError("--format megatron needs -o PREFIX (it writes PREFIX.bin and PREFIX.idx)", 2)
        if args.output.endswith((".bin", ".idx")):
            raise CliError(f"-o takes the prefix, without .bin / .idx: -o {args.output[:-4]}", 2)
    tok = load_tokenizer(args)
    from bpetok import _threads

    workers = _threads(args.threads)
    start = time.perf_counter()
    progress = Progress(args, "encode")
    tally = _Tally()
    try:
        reader = open_inputs(args, progress)
        if args.format == "megatron":
            import numpy as np

            from bpetok.megatron import MegatronWriter, dtype_for_vocab

            output = args.output
            with MegatronWriter(
                args.output, dtype_for_vocab(tok.vocab_size()), make_temp=temp_beside
            ) as writer:

                def add_flat(ids: Any, offsets: Any) -> None:
                    writer.add_documents(ids, offsets)

                def add_bytes(data: bytes, offsets: bytes | None) -> None:
                    assert offsets is not None
                    add_flat(np.frombuffer(data, dtype=tok.dtype), np.frombuffer(offsets, dtype=np.int64))

                _encode_runs(args, tok, reader, workers, progress, tally, add_bytes, add_flat)
            on_stdout = False
        else:
            with AtomicOutput(args.output) as out:

                def write_lines(data: bytes, _offsets: bytes | None) -> None:
                    out.stream.write(data)

                _encode_runs(args, tok, reader, workers, progress, tally, write_lines, None)
            output = out.path
            on_stdout = out.is_stdout
        documents, tokens = tally.documents, tally.tokens
    finally:
        progress.close()
    seconds = time.perf_counter() - start
    summary = {
        "command": "encode",
        "format": args.format,
        "output": output,
        "inputs": len(reader.files),
        "documents": documents,
        "tokens": tokens,
        "input_bytes": reader.bytes_read,
        "seconds": round(seconds, 3),
        "mb_per_s": _throughput(reader.bytes_read, seconds),
    }
    report(args, summary, output_on_stdout=on_stdout)
    return 0


def _encode_runs(
    args: argparse.Namespace,
    tok: Tokenizer,
    reader: InputReader,
    workers: int,
    progress: Progress,
    tally: _Tally,
    emit: Callable[[bytes, bytes | None], None],
    add_flat: Callable[[Any, Any], None] | None,
) -> None:
    """Encodes every input in order, handing the output to ``emit(data, offsets)`` (JSON lines,
    or with ``add_flat`` for Megatron, ids and offsets). JSONL and text are read and encoded in
    Rust (``Tokenizer.encode_files``); Parquet is read in Python and encoded in batches."""
    itemsize = 0 if add_flat is None else tok.dtype.itemsize
    for rust_read, files in _runs_of_inputs(reader.files):
        if rust_read:
            summaries = tok._core.encode_files(
                _file_args(files),
                field=args.field,
                lines=args.lines,
                errors=args.errors,
                num_threads=workers,
                add_bos=args.bos,
                add_eos=args.eos,
                itemsize=itemsize,
                on_output=emit,
                progress=_progress_callback(progress, tally),
                fallback=_line_fallback(args),
            )
            _record_summaries(files, summaries)
            continue

        def lines_of(texts: list[str]) -> tuple[bytes, int]:
            return tok._core.encode_batch_jsonl(texts, args.bos, args.eos, workers)

        def flat_of(texts: list[str]) -> Any:
            return tok.encode_batch_to_numpy(texts, add_bos=args.bos, add_eos=args.eos, num_threads=workers)

        if add_flat is None:
            for lines, _ in _encode_in_python(args, files, progress, tally, lines_of, lambda r: r[1]):
                emit(lines, None)
        else:
            for ids, offsets in _encode_in_python(
                args, files, progress, tally, flat_of, lambda r: int(r[1][-1])
            ):
                add_flat(ids, offsets)


def _file_args(files: list[InputFile]) -> list[tuple[str | None, str, str, str | None]]:
    """``files`` as the Rust reader takes them (stdin's compression is detected there)."""
    return [
        (None, f.name, f.kind, None) if f.path == "-" else (f.path, f.name, f.kind, f.compression or "none")
        for f in files
    ]


def _record_summaries(files: list[InputFile], summaries: list[tuple[int, str, int, str]]) -> None:
    """Size, sha256 and document count of ``files`` as the Rust reader found them."""
    for file, (size, sha256, documents, compression) in zip(files, summaries, strict=True):
        file.size, file.sha256, file.documents, file.bytes_read = size, sha256, documents, size
        if file.path == "-" and compression != "file":
            file.compression = compression


# ---- decode ----------------------------------------------------------------------------------


def _decode_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser, field=False)
    parser.add_argument("-o", "--output", metavar="OUT", help="output file (default: stdout)")
    parser.add_argument("--field", default="ids", help="the field holding the ids (default: ids)")


def _id_lists(records: Iterable[Any], field: str) -> Iterator[tuple[str, list[int]]]:
    for value, source in records:
        ids = value.get(field)
        if not isinstance(ids, list):
            if field not in value:
                raise InputError(f"{source}: record has no field {field!r}; name the ids field with --field")
            raise InputError(f"{source}: field {field!r} is not a list of token ids")
        if not all(type(i) is int for i in ids):  # JSON true/false would pass as 1/0
            bad = next(i for i in ids if type(i) is not int)
            raise InputError(f"{source}: token ids must be integers, found {json.dumps(bad)}")
        yield source, ids


def run_decode(args: argparse.Namespace) -> int:
    """Ids JSONL (as ``encode`` writes it) back to text JSONL, one ``{"text": ...}`` per record."""
    tok = load_tokenizer(args)
    start = time.perf_counter()
    progress = Progress(args, "decode")
    documents = tokens = 0
    try:
        reader = open_inputs(args, progress)
        with AtomicOutput(args.output) as out:
            batch: list[tuple[str, list[int]]] = []
            records = _id_lists(reader.records(), args.field)
            while True:
                batch.clear()
                for item in records:
                    batch.append(item)
                    if len(batch) >= BATCH_RECORDS:
                        break
                if not batch:
                    break
                texts = _decode_batch(tok, batch, args.threads)
                out.stream.write(
                    "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts).encode("utf-8")
                )
                documents += len(batch)
                tokens += sum(len(ids) for _, ids in batch)
                progress.set_counts(documents, tokens)
    finally:
        progress.close()
    seconds = time.perf_counter() - start
    summary = {
        "command": "decode",
        "output": out.path,
        "inputs": len(reader.files),
        "documents": documents,
        "tokens": tokens,
        "input_bytes": reader.bytes_read,
        "seconds": round(seconds, 3),
        "mb_per_s": _throughput(reader.bytes_read, seconds),
    }
    report(args, summary, output_on_stdout=out.is_stdout)
    return 0


def _decode_batch(tok: Tokenizer, batch: list[tuple[str, list[int]]], threads: int | None) -> list[str]:
    try:
        return tok.decode_batch([ids for _, ids in batch], num_threads=threads)
    except (TypeError, ValueError, IndexError, OverflowError):
        pass
    for source, ids in batch:  # find the record at fault
        bad = next((i for i in ids if isinstance(i, bool) or not isinstance(i, int)), None)
        if bad is not None:
            raise InputError(f"{source}: token ids must be integers, found {json.dumps(bad)}")
        try:
            tok.decode(ids)
        except (TypeError, ValueError, IndexError, OverflowError) as err:
            raise InputError(f"{source}: {err}") from None
    raise AssertionError("decode_batch failed but every record decodes")  # pragma: no cover


# ---- pack, inspect, verify -------------------------------------------------------------------


def _pack_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser)
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="the shard directory to write")
    parser.add_argument(
        "--seq-len", type=_positive_int, required=True, metavar="L", help="tokens per sample (at least 2)"
    )
    parser.add_argument(
        "--window",
        type=_non_negative_int,
        required=True,
        metavar="W",
        help="sliding window: a token sees itself and the W-1 before it (0: full causal attention)",
    )
    parser.add_argument(
        "--overlap",
        type=_non_negative_int,
        default=None,
        metavar="N",
        help="context tokens repeated at the start of a continuation chunk (default: W when 0 < W < L, "
        "else 1; less than W loses context, see docs/packing.md)",
    )
    parser.add_argument(
        "--pack-buffer",
        type=_positive_int,
        default=4096,
        metavar="CHUNKS",
        help="chunks held for best-fit packing before samples are written (default 4096)",
    )
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="shuffle seed (default 0)")
    parser.add_argument(
        "--samples-per-shard", type=_positive_int, default=8192, metavar="N", help="default 8192"
    )
    parser.add_argument(
        "--bos",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start documents with <s> (default)",
    )
    parser.add_argument(
        "--eos", action=argparse.BooleanOptionalAction, default=True, help="end documents with </s> (default)"
    )
    parser.add_argument(
        "--pad-id",
        type=_non_negative_int,
        default=None,
        metavar="ID",
        help="the id padding tokens hold (default: the </s> id, or 0 without one); padding is never a target",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing shard output in DIR (only its files)"
    )


def run_pack(args: argparse.Namespace) -> int:
    """Text to training shards: documents are encoded, long ones cut with their sliding window's
    context, packed into samples of exactly --seq-len tokens by best-fit decreasing, shuffled and
    written as .npy shards with a manifest (docs/packing.md, docs/shard-format.md)."""
    import hashlib

    from bpetok import _bpetok, _threads

    tok = load_tokenizer(args)
    if args.bos and tok.bos_id() < 0:
        raise CliError("the model has no <s> piece; pass --no-bos", 2)
    if args.eos and tok.eos_id() < 0:
        raise CliError("the model has no </s> piece; pass --no-eos", 2)
    pad_id = args.pad_id if args.pad_id is not None else max(tok.eos_id(), 0)
    try:
        writer = _bpetok.PackWriter(
            tok._core,
            args.output,
            seq_len=args.seq_len,
            window=args.window,
            overlap=args.overlap,
            pack_buffer=args.pack_buffer,
            seed=args.seed,
            pad_id=pad_id,
            samples_per_shard=args.samples_per_shard,
            add_bos=args.bos,
            add_eos=args.eos,
            overwrite=args.overwrite,
        )
    except ValueError as err:
        raise CliError(str(err)) from None
    start = time.perf_counter()
    progress = Progress(args, "pack")
    workers = _threads(args.threads)
    tally = _Tally()
    try:
        reader = open_inputs(args, progress)
        for file in reader.files:
            try:
                file.path.encode("utf-8")
            except UnicodeEncodeError:
                raise CliError(
                    f"{os.fsencode(file.path)!r}: this file name is not UTF-8, so manifest.json "
                    "cannot record it; rename the file"
                ) from None
        for rust_read, files in _runs_of_inputs(reader.files):
            pack_files = _pack_in_rust if rust_read else _pack_in_python
            pack_files(args, writer, files, workers, progress, tally)
        input_options = {
            "errors": args.errors,
            "field": args.field,
            "input_format": args.input_format,
            "lines": args.lines,
        }
        inputs = [(f.path, f.size or 0, f.sha256 or "", f.documents) for f in reader.files]
        manifest = json.loads(
            writer.finish(hashlib.sha256(tok.model_bytes).hexdigest(), inputs, json.dumps(input_options))
        )
    except ValueError as err:
        raise CliError(str(err)) from None
    finally:
        progress.close()
        writer.close()
    seconds = time.perf_counter() - start
    totals = manifest["totals"]
    summary = {
        "command": "pack",
        "output": args.output,
        "inputs": len(reader.files),
        "documents": totals["documents"],
        "tokens": totals["document_tokens"],
        "samples": totals["samples"],
        "shards": len(manifest["shards"]),
        "padding_tokens": totals["padding_tokens"],
        "context_tokens": totals["context_tokens"],
        "documents_split": totals["documents_split"],
        "input_bytes": reader.bytes_read,
        "seconds": round(seconds, 3),
        "mb_per_s": _throughput(reader.bytes_read, seconds),
    }
    report(args, summary, output_on_stdout=False)
    return 0


def _runs_of_inputs(files: list[InputFile]) -> Iterator[tuple[bool, list[InputFile]]]:
    """Consecutive inputs grouped by who reads them: ``(True, files)`` for JSONL and text, which
    the Rust reader of ``PackWriter.add_files`` takes, ``(False, files)`` for Parquet."""
    run: list[InputFile] = []
    for file in files:
        rust_read = file.kind != "parquet"
        if run and (run[0].kind != "parquet") != rust_read:
            yield run[0].kind != "parquet", run
            run = []
        run.append(file)
    if run:
        yield run[0].kind != "parquet", run


class _Tally:
    """Documents and tokens packed so far, over all of a run's inputs (for the progress bar)."""

    def __init__(self) -> None:
        self.documents = 0
        self.tokens = 0


def _progress_callback(progress: Progress, tally: _Tally) -> Callable[[int, int, int], None]:
    """The ``progress(bytes, documents, tokens)`` callback of one Rust pipeline run (its counts
    start at 0) that keeps ``tally`` and the bar at the totals of the whole command."""
    before = (tally.documents, tally.tokens)
    shown = 0

    def on_progress(nbytes: int, documents: int, tokens: int) -> None:
        nonlocal shown
        progress.add_bytes(nbytes - shown)
        shown = nbytes
        tally.documents, tally.tokens = before[0] + documents, before[1] + tokens
        progress.set_counts(tally.documents, tally.tokens)

    return on_progress


def _pack_in_rust(
    args: argparse.Namespace,
    writer: Any,
    files: list[InputFile],
    workers: int,
    progress: Progress,
    tally: _Tally,
) -> None:
    """Packs JSONL and text ``files``, read, encoded and packed in Rust (no document passes
    through Python). Lines that Rust's JSON parser does not take are decided by
    :func:`jsonl_line_document`, so the rules are those of :class:`InputReader`."""
    summaries = writer.add_files(
        _file_args(files),
        field=args.field,
        lines=args.lines,
        errors=args.errors,
        num_threads=workers,
        progress=_progress_callback(progress, tally),
        fallback=_line_fallback(args),
    )
    _record_summaries(files, summaries)


def _pack_in_python(
    args: argparse.Namespace,
    writer: Any,
    files: list[InputFile],
    workers: int,
    progress: Progress,
    tally: _Tally,
) -> None:
    """Packs ``files`` (Parquet) read by :class:`InputReader`, encoded and packed in batches."""
    for _ in _encode_in_python(
        args, files, progress, tally, lambda texts: int(writer.add_texts(texts, workers)), int
    ):
        pass


def _inspect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", metavar="DIR", help="a shard directory written by bpetok pack")
    parser.add_argument(
        "--show",
        type=int,
        default=None,
        metavar="I",
        help="decode sample I (counted over all shards) with its segment boundaries marked",
    )


def run_inspect(args: argparse.Namespace) -> int:
    """Totals, padding and context shares and a histogram of segment lengths of a shard
    directory; --show I decodes one sample with its segments marked."""
    from bpetok import _bpetok

    try:
        summary = json.loads(_bpetok.inspect_shards(args.directory))
    except ValueError as err:
        raise CliError(str(err)) from None
    shown = None
    if args.show is not None:
        shown = _show_sample(args, args.show)
    if args.json:
        if shown is not None:
            summary["sample"] = shown
        sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
        return 0
    t = summary["totals"]
    lines = [
        f"{args.directory}: {summary['shards']} shards, {t['samples']:,} samples of "
        f"{summary['seq_len']} tokens ({summary['token_dtype']}), window {summary['window']}, "
        f"overlap {summary['overlap_tokens']}",
        f"documents {t['documents']:,} ({t['documents_split']:,} split, {t['empty_documents']:,} empty), "
        f"document tokens {t['document_tokens']:,}",
        f"padding {summary['padding_percent']:.2f}%  context {summary['context_percent']:.2f}%  "
        f"targets {summary['target_percent']:.2f}%",
        "segment lengths          documents    padding",
    ]
    for bucket in summary["segment_lengths"]:
        span = f"{bucket['min']}-{bucket['max']}"
        lines.append(f"  {span:>20}  {bucket['document_segments']:>10,}  {bucket['padding_segments']:>9,}")
    if shown is not None:
        lines.append(f"sample {args.show}:")
        for seg in shown["segments"]:
            where = "padding" if seg["doc_id"] < 0 else f"doc {seg['doc_id']} from token {seg['doc_start']}"
            lines.append(f"  [{where}, {seg['length']} tokens] {seg['text']!r}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _show_sample(args: argparse.Namespace, index: int) -> dict[str, Any]:
    from bpetok import ShardDataset

    tok = load_tokenizer(args)
    ds = ShardDataset(args.directory)
    if not -len(ds) <= index < len(ds):
        raise CliError(f"--show {index}: the directory has {len(ds)} samples", 2)
    sample = ds[index]
    bounds = sample["cu_seqlens"].tolist()
    segments = []
    for k in range(len(bounds) - 1):
        ids = sample["input_ids"][bounds[k] : bounds[k + 1]].tolist()
        segments.append(
            {
                "doc_id": int(sample["doc_ids"][k]),
                "doc_start": int(sample["doc_starts"][k]),
                "length": len(ids),
                "text": tok.decode(ids),
            }
        )
    return {"index": index, "segments": segments}


def _verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", metavar="DIR", help="a shard directory written by bpetok pack")


def run_verify(args: argparse.Namespace) -> int:
    """Checks a shard directory: every file's size and sha256 against the manifest, and every
    invariant of docs/shard-format.md. Exit status 1 on any violation, each one listed."""
    from bpetok import _bpetok

    ok, summary, violations = _bpetok.verify_shards(args.directory)
    if args.json:
        sys.stdout.write(json.dumps({"ok": ok, "summary": summary, "violations": violations}) + "\n")
    else:
        stream = sys.stdout if ok else sys.stderr
        stream.write(f"{args.directory}: {'OK' if ok else 'FAILED'}: {summary}\n")
        for violation in violations:
            stream.write(f"  {violation}\n")
    return 0 if ok else 1


# ---- the command line ------------------------------------------------------------------------

Subcommand = tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
SUBCOMMANDS: list[Subcommand] = [
    ("encode", "text to token ids (JSONL, or Megatron-LM .bin/.idx)", _encode_arguments, run_encode),
    ("decode", "token ids (JSONL, as encode writes) back to text JSONL", _decode_arguments, run_decode),
    ("pack", "text to sliding-window-aware training shards", _pack_arguments, run_pack),
    ("inspect", "totals and segment lengths of a shard directory", _inspect_arguments, run_inspect),
    ("verify", "check a shard directory's checksums and invariants", _verify_arguments, run_verify),
]
"""(name, one-line help, argparse setup, run): add a subcommand by adding a line."""

_GLOBAL_DEFAULTS: dict[str, Any] = {"vocab": None, "threads": None, "quiet": False, "json": False}


def build_parser() -> argparse.ArgumentParser:
    from bpetok import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Exact SentencePiece BPE for Mistral / Mixtral vocabularies: encode, decode, "
        "pack training shards, inspect and verify them.",
        epilog="Exit status: 0 done, 1 bad input or I/O error, 2 usage error, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    # Global options are parsed before and after the subcommand name; SUPPRESS keeps a value
    # given before it from being reset by the subparser's default.
    _add_global_arguments(parser, argparse.SUPPRESS)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text, setup, run in SUBCOMMANDS:
        sub = subparsers.add_parser(name, help=help_text, description=run.__doc__)
        setup(sub)
        _add_global_arguments(sub, argparse.SUPPRESS)
        sub.set_defaults(run=run)
    return parser


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for key, value in _GLOBAL_DEFAULTS.items():
        if not hasattr(args, key):
            setattr(args, key, value)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)  # run the cleanup of temporary files
    try:
        return _run(parser, args)
    finally:
        _remove_temporaries()


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        return int(args.run(args))
    except CliError as err:
        if err.status == 2:
            parser.error(str(err))  # usage message, exit 2
        return _fail(str(err), err.status)
    except InputError as err:
        return _fail(str(err), 1)
    except KeyboardInterrupt:
        sys.stderr.write(f"\n{PROG}: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (as with `| head`): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        return _fail(f"{where}{err.strerror or err}", 1)


def _fail(message: str, status: int) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return status
