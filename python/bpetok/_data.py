"""Corpora to ids, text and training shards: :func:`pack`, :func:`encode_files`,
:func:`decode_files`, :func:`count_files`, :func:`verify`, :func:`inspect` and :func:`show_sample`.

The work is the Rust core's (``bpetok::data``: one reader, the pipeline, the pack session, the
shard writer), run with the GIL released; this module holds the argument policy (defaults, types,
allowed values) and shapes the results. The command line is a thin layer over these functions.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

from bpetok import _bpetok
from bpetok._chat import ChatFormat, TrainOn, check_options
from bpetok._errors import PackOptionsError
from bpetok._tokenizer import Tokenizer, _default_tokenizer, _threads

__all__ = [
    "MAX_SEQ_LEN",
    "CountResult",
    "DecodeResult",
    "EncodeResult",
    "InputCount",
    "PackResult",
    "Progress",
    "VerifyReport",
    "count_files",
    "decode_files",
    "encode_files",
    "inspect",
    "pack",
    "show_sample",
    "verify",
]

MAX_SEQ_LEN: int = _bpetok.MAX_SEQ_LEN
"""The longest sample :func:`pack` writes, in tokens (2^20)."""

InputFormat = Literal["auto", "jsonl", "text", "parquet"]
Utf8Errors = Literal["strict", "replace"]
PathArg = str | os.PathLike[str]


class Progress(NamedTuple):
    """What a run has done so far, given to a ``progress`` callback about ten times a second."""

    bytes_read: int
    """Raw (still compressed) input bytes read."""
    total_bytes: int | None
    """Raw bytes of all inputs, or None when stdin is one of them."""
    documents: int
    tokens: int


ProgressCallback = Callable[[Progress], object]


class ResumedRun(NamedTuple):
    """What a resumed :func:`pack` found done: complete shards kept and their samples, and
    whether the run had finished already (then nothing was done)."""

    shards: int
    samples: int
    complete: bool


class PackResult(NamedTuple):
    """What :func:`pack` wrote. ``manifest`` is the ``manifest.json`` it wrote, as a dict."""

    output: str
    inputs: int
    documents: int
    tokens: int
    """Document tokens (BOS and EOS included), before any context is repeated."""
    samples: int
    shards: int
    padding_tokens: int
    context_tokens: int
    documents_split: int
    overlap_tokens: int
    input_bytes: int
    seconds: float
    padding_share: float
    """Padding tokens over all sample tokens."""
    context_share: float
    """Context tokens (repeated from the chunk before, never targets) over all sample tokens."""
    skipped_records: int | None
    """Bad records passed over (``skip_bad_records=True``), over all inputs; None without it."""
    resumed: ResumedRun | None
    """With ``resume=True``: what the interrupted run had done; None for a run from the start."""
    manifest: dict[str, Any]

    def __repr__(self) -> str:  # the manifest lists every shard: leave it out
        return f"PackResult(output={self.output!r}, documents={self.documents}, samples={self.samples})"


class EncodeResult(NamedTuple):
    """What :func:`encode_files` wrote (``output`` None: stdout)."""

    output: str | None
    format: str
    inputs: int
    documents: int
    tokens: int
    input_bytes: int
    seconds: float


class DecodeResult(NamedTuple):
    """What :func:`decode_files` wrote (``output`` None: stdout)."""

    output: str | None
    inputs: int
    documents: int
    tokens: int
    input_bytes: int
    seconds: float


class InputCount(NamedTuple):
    """What one input of :func:`count_files` holds (a directory's files are inputs each)."""

    name: str
    """The file's path as resolved (``<stdin>`` for standard input)."""
    documents: int
    tokens: int
    text_bytes: int
    """UTF-8 bytes of the documents' text, as read."""
    input_bytes: int
    """Raw (still compressed) bytes of the file."""
    tokens_per_byte: float
    """``tokens / text_bytes`` (0.0 for no text)."""


class CountResult(NamedTuple):
    """What :func:`count_files` counted: the totals, and every input in ``per_input``."""

    inputs: int
    documents: int
    tokens: int
    text_bytes: int
    input_bytes: int
    tokens_per_byte: float
    seconds: float
    per_input: list[InputCount]


class VerifyReport(NamedTuple):
    """The verdict of :func:`verify`: ``ok``, a one-line ``summary``, and every violation found."""

    ok: bool
    summary: str
    violations: list[str]


def _paths(inputs: Sequence[PathArg] | PathArg) -> list[str]:
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths = [os.fspath(p) for p in inputs]
    for p in paths:
        if not isinstance(p, str):
            raise TypeError(f"input paths must be str or os.PathLike[str], got {type(p).__name__}")
    return paths


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def _chat_choice(chat: object, train_on: object) -> str | None:
    """The instruct format to read conversations in, or None for text documents."""
    check_options(chat, train_on)
    return chat if isinstance(chat, str) else None


def _tokenizer(tokenizer: Tokenizer | None) -> Tokenizer:
    if tokenizer is None:
        return _default_tokenizer()
    if not isinstance(tokenizer, Tokenizer):
        raise TypeError(f"tokenizer must be a bpetok.Tokenizer, got {type(tokenizer).__name__}")
    return tokenizer


def _progress(callback: ProgressCallback | None) -> Callable[[int, int | None, int, int], object] | None:
    if callback is None:
        return None

    def call(bytes_read: int, total: int | None, documents: int, tokens: int) -> object:
        return callback(Progress(bytes_read, total, documents, tokens))

    return call


def _whole(name: str, value: int) -> int:
    """An integer option as the native module takes it (0 to 2^63 - 1). The bounds that matter
    are the core's (its message says why); this only refuses what cannot reach it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        error = PackOptionsError(f"{name}: {value} is negative")
    elif value >= 1 << 63:
        error = PackOptionsError(f"{name}: {value} is far more than any value it may take")
    else:
        return value
    error.option = name
    raise error


def _optional_whole(name: str, value: int | None) -> int | None:
    return None if value is None else _whole(name, value)


def _output(output: PathArg | None) -> str | None:
    return None if output is None else os.fspath(output)


_FORMATS = ("auto", "jsonl", "text", "parquet")
_ERRORS = ("strict", "replace")


def pack(
    inputs: Sequence[PathArg] | PathArg,
    output: PathArg,
    *,
    seq_len: int,
    window: int,
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
    num_threads: int | None = None,
    progress: ProgressCallback | None = None,
    chat: ChatFormat | None = None,
    train_on: TrainOn = "assistant",
    partition_size: int | str | None = None,
) -> PackResult:
    """Encodes the documents of ``inputs`` and packs them into training shards in ``output``,
    exactly as ``bpetok pack`` does (the same options; ``docs/packing.md``,
    ``docs/shard-format.md``).

    ``inputs`` are files, directories or ``"-"`` (stdin): JSONL, text and Parquet, plain, gzip
    or zstd (``docs/cli.md``). Samples hold exactly ``seq_len`` tokens; a document longer than
    that is split, each chunk after the first starting with ``overlap`` tokens of context (by
    default the sliding ``window``). ``pad_id`` defaults to the ``</s>`` id. The output is the
    same whatever ``num_threads`` is (default: every CPU this process may use).

    ``skip_bad_records=True`` passes over (and counts, per input in the manifest) a JSONL line
    that is not JSON, not an object, lacks ``field`` or holds a non-string there, and a Parquet
    null, instead of stopping at it.

    ``chat="v1"|"v2"|"v3"`` reads every JSONL line as a conversation (``{"messages": [...],
    "tools": [...]}``) and packs it as a document of the ids ``mistral-common`` makes in that
    instruct format; the shards then hold a loss mask, and labels are the tokens of assistant
    messages only (``train_on="all"``: every token), see ``docs/chat.md``. ``bos``, ``eos`` and
    ``field`` do not apply: the format writes ``<s>`` and ``</s>`` itself. A conversation the
    format cannot encode is an :class:`InputError` of kind ``bad_conversation`` naming the file,
    line and message (``skip_bad_records`` passes over it).

    ``resume=True`` continues a run that was interrupted in ``output`` (killed, out of disk,
    stopped), given the same inputs and options, and ends with the bytes an uninterrupted run
    writes; a run with other inputs or options is refused with a :class:`ShardError` naming the
    differences. With nothing to continue it starts from the beginning, and for a finished run it
    returns that run's result (``resumed.complete``). See ``docs/reliability.md``.

    ``partition_size`` (bytes, or a string such as ``"256MiB"``) cuts the inputs into partitions
    of about that size, by file, byte ranges of large JSONL and text-lines files (at line
    boundaries) and row groups of large Parquet files, and packs each alone into ``output/part-NNNNN/``,
    with one ``manifest.json`` for the whole run: the output :func:`bpetok.ray.pack` writes on a
    cluster, byte for byte (``docs/distributed.md``).

    Raises :class:`InputError` for an input that cannot be read as asked (with file and line),
    :class:`PackOptionsError` for an option out of bounds, :class:`ShardError` when ``output``
    holds another output (pass ``overwrite=True``) or is a file, :class:`OutputError` (an
    ``OSError``) when it cannot be written. A failed run leaves no ``manifest.json``, so the
    directory never passes :func:`verify`. ``progress`` gets a :class:`Progress` about ten
    times a second; an exception it raises (and Ctrl-C) stops the run.
    """
    tok = _tokenizer(tokenizer)
    start = time.perf_counter()
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
        num_threads=num_threads,
        chat=chat,
        train_on=train_on,
        partition_size=partition_size,
    )
    report = _bpetok.pack(tok._core, _paths(inputs), os.fspath(output), options, _progress(progress))
    return pack_result(report, time.perf_counter() - start)


def pack_result(report: dict[str, Any], seconds: float) -> PackResult:
    """A :class:`PackResult` of the core's report."""
    resumed = report.pop("resumed")
    return PackResult(
        seconds=seconds,
        resumed=None if resumed is None else ResumedRun(**resumed),
        **report,
    )


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1 << 10,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1 << 20,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1 << 30,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1 << 40,
}


def _size_error(message: str) -> PackOptionsError:
    error = PackOptionsError(f"partition_size: {message}")
    error.option = "partition_size"
    return error


def parse_size(value: int | str) -> int:
    """A size in bytes: an int, or a string of digits with an optional unit (``k``, ``M``,
    ``G``, ``T`` and ``kB``... are powers of 1000, ``KiB``, ``MiB``... powers of 1024)."""
    if isinstance(value, bool):
        raise _size_error(f"must be a size in bytes, got {value!r}")
    if isinstance(value, int):
        number, unit = value, ""
    else:
        text = str(value).strip()
        digits = len(text) - len(text.lstrip("0123456789"))
        number_text, unit = text[:digits], text[digits:].strip().lower()
        if not number_text or unit not in _SIZE_UNITS:
            raise _size_error(f"must be a size such as 268435456, 256MiB or 1G, got {value!r}")
        number = int(number_text)
    size = number * _SIZE_UNITS[unit]
    if size < 1:
        raise _size_error(f"must be at least 1 byte, got {value!r}")
    if size >= 1 << 64:
        raise _size_error(f"is too large: {value!r}")
    return size


def pack_options(
    *,
    seq_len: int,
    window: int,
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
    num_threads: int | None = None,
    chat: ChatFormat | None = None,
    train_on: TrainOn = "assistant",
    partition_size: int | str | None = None,
) -> dict[str, Any]:
    """The options of :func:`pack` checked and in the form the core takes (one dict, which
    :mod:`bpetok.ray` sends to its workers)."""
    return {
        "seq_len": _whole("seq_len", seq_len),
        "window": _whole("window", window),
        "overlap": _optional_whole("overlap", overlap),
        "pack_buffer": _whole("pack_buffer", pack_buffer),
        "seed": _whole("seed", seed),
        "pad_id": _optional_whole("pad_id", pad_id),
        "samples_per_shard": _whole("samples_per_shard", samples_per_shard),
        "bos": bool(bos) and chat is None,
        "eos": bool(eos) and chat is None,
        "field": field,
        "lines": bool(lines),
        "errors": _choice("errors", errors, _ERRORS),
        "input_format": _choice("input_format", input_format, _FORMATS),
        "skip_bad_records": bool(skip_bad_records),
        "overwrite": bool(overwrite),
        "resume": bool(resume),
        "num_threads": _threads(num_threads),
        "chat": _chat_choice(chat, train_on),
        "train_on": train_on,
        "partition_size": None if partition_size is None else parse_size(partition_size),
    }


def encode_files(
    inputs: Sequence[PathArg] | PathArg,
    output: PathArg | None,
    *,
    format: Literal["jsonl", "megatron"] = "jsonl",
    bos: bool = False,
    eos: bool = False,
    field: str = "text",
    lines: bool = False,
    errors: Utf8Errors = "strict",
    input_format: InputFormat = "auto",
    tokenizer: Tokenizer | None = None,
    num_threads: int | None = None,
    progress: ProgressCallback | None = None,
    chat: ChatFormat | None = None,
    train_on: TrainOn = "assistant",
) -> EncodeResult:
    """Encodes the documents of ``inputs`` (as :func:`pack` reads them) to ``output``, as
    ``bpetok encode`` does: ``format="jsonl"`` writes one ``{"ids": [...]}`` line per document
    (``output`` None: to stdout), ``"megatron"`` writes Megatron-LM's ``PREFIX.bin`` and
    ``PREFIX.idx`` for ``output=PREFIX``. A file output appears only when complete (written under
    a temporary name and renamed), so a failed run leaves none. With ``chat`` (as for
    :func:`pack`), each line is a conversation and is written as ``{"ids": [...], "mask":
    [0, 1, ...]}`` (1: a training target); ``bos`` and ``eos`` do not apply."""
    tok = _tokenizer(tokenizer)
    start = time.perf_counter()
    report = _bpetok.encode_files(
        tok._core,
        _paths(inputs),
        _output(output),
        format=_choice("format", format, ("jsonl", "megatron")),
        bos=bos and chat is None,
        eos=eos and chat is None,
        field=field,
        lines=lines,
        errors=_choice("errors", errors, _ERRORS),
        input_format=_choice("input_format", input_format, _FORMATS),
        num_threads=_threads(num_threads),
        progress=_progress(progress),
        chat=_chat_choice(chat, train_on),
        train_on=train_on,
    )
    return EncodeResult(format=format, seconds=time.perf_counter() - start, **report)


def decode_files(
    inputs: Sequence[PathArg] | PathArg,
    output: PathArg | None,
    *,
    field: str = "ids",
    errors: Utf8Errors = "strict",
    input_format: Literal["auto", "jsonl"] = "auto",
    tokenizer: Tokenizer | None = None,
    num_threads: int | None = None,
    progress: ProgressCallback | None = None,
) -> DecodeResult:
    """Decodes ids JSONL (one ``{"ids": [...]}`` per line, as :func:`encode_files` writes it)
    to text JSONL, one ``{"text": ...}`` line per record, as ``bpetok decode`` does. An id that
    is not an integer or not in the vocabulary is an :class:`InputError` naming file and line."""
    tok = _tokenizer(tokenizer)
    start = time.perf_counter()
    report = _bpetok.decode_files(
        tok._core,
        _paths(inputs),
        _output(output),
        field=field,
        errors=_choice("errors", errors, _ERRORS),
        input_format=_choice("input_format", input_format, ("auto", "jsonl")),
        num_threads=_threads(num_threads),
        progress=_progress(progress),
    )
    return DecodeResult(seconds=time.perf_counter() - start, **report)


def count_files(
    inputs: Sequence[PathArg] | PathArg,
    *,
    bos: bool = False,
    eos: bool = False,
    field: str = "text",
    lines: bool = False,
    errors: Utf8Errors = "strict",
    input_format: InputFormat = "auto",
    tokenizer: Tokenizer | None = None,
    num_threads: int | None = None,
    progress: ProgressCallback | None = None,
    chat: ChatFormat | None = None,
    train_on: TrainOn = "assistant",
) -> CountResult:
    """Counts the documents, tokens and text bytes of every input (read as :func:`pack` and
    :func:`encode_files` read them), as ``bpetok count`` does: the tokens :func:`encode_files`
    would write with the same ``bos`` / ``eos``, without making them or writing anything. Errors
    are those of :func:`encode_files` (an :class:`InputError` names file and line). With
    ``chat``, each line is a conversation and its tokens are counted as :func:`pack` makes them."""
    tok = _tokenizer(tokenizer)
    start = time.perf_counter()
    report = _bpetok.count_files(
        tok._core,
        _paths(inputs),
        bos=bos and chat is None,
        eos=eos and chat is None,
        field=field,
        lines=lines,
        errors=_choice("errors", errors, _ERRORS),
        input_format=_choice("input_format", input_format, _FORMATS),
        num_threads=_threads(num_threads),
        progress=_progress(progress),
        chat=_chat_choice(chat, train_on),
        train_on=train_on,
    )
    per_input = [InputCount(**item) for item in report.pop("per_input")]
    return CountResult(seconds=time.perf_counter() - start, per_input=per_input, **report)


def verify(directory: PathArg, *, tokenizer: Tokenizer | None = None) -> VerifyReport:
    """Checks a shard directory: every file's size and sha256 against its manifest and every
    invariant of ``docs/shard-format.md``; with ``tokenizer``, also that the shards were packed
    with it. Never raises for a damaged directory: the report lists what is wrong."""
    core = None if tokenizer is None else _tokenizer(tokenizer)._core
    counts, violations, found = _bpetok.verify_shards(os.fspath(directory), core)
    if counts is None:
        return VerifyReport(False, f"{_plural(found, 'violation')} found", violations)
    names = ("shard", "sample", "segment", "document", "byte")
    summary = ", ".join(_plural(n, name) for n, name in zip(counts, names, strict=True))
    return VerifyReport(True, f"{summary} checked", [])


def _plural(n: int, word: str) -> str:
    """``1 document``, ``2 documents``, with thousands separators."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def inspect(directory: PathArg) -> dict[str, Any]:
    """Totals, padding and context shares and a histogram of segment lengths of a shard
    directory (what ``bpetok inspect`` prints), as a dict."""
    return _bpetok.inspect_shards(os.fspath(directory))


def show_sample(directory: PathArg, index: int, *, tokenizer: Tokenizer | None = None) -> dict[str, Any]:
    """Sample ``index`` (counted over all shards; negative from the end) of a shard directory,
    decoded segment by segment: ``{"index": i, "segments": [{"doc_id", "doc_start", "length",
    "text"}, ...]}`` (``doc_id`` -1 for padding). ``tokenizer`` (default: the embedded one) must
    be the one the shards were packed with, else :class:`ShardError` names both; an index out of
    range is an ``IndexError``."""
    from bpetok.dataset import ShardDataset

    tok = _tokenizer(tokenizer)
    path = os.fspath(directory)
    _bpetok.check_tokenizer(path, tok._core)
    ds = ShardDataset(path)
    if not -len(ds) <= index < len(ds):
        raise IndexError(f"sample {index} is out of range: {path} has {_plural(len(ds), 'sample')}")
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
    return {"index": index if index >= 0 else len(ds) + index, "segments": segments}
