"""Documents from the command line's inputs: files, directories and stdin, plain or compressed.

This module owns what counts as an input and a document (``docs/cli.md`` is the user's version):

- An input is a path or ``-`` for stdin. A directory is walked recursively; it contributes the
  files whose names end in ``.jsonl``, ``.json``, ``.txt`` or ``.parquet``, each optionally followed
  by ``.gz`` or ``.zst``, in sorted order of their path components (code point order, not
  locale), skipping names that start with a dot. Other files in a directory are ignored.
- The kind of a file comes from its name (``--input-format`` forces one for every input);
  stdin is JSONL unless ``--input-format`` says otherwise, and is decompressed when it starts
  with the gzip or zstd magic bytes.
- JSONL (``.jsonl`` and ``.json``): one JSON object per line, the document is the string in
  ``field`` (default ``text``). Blank lines are skipped. A line that is not JSON, not an object,
  lacks the field or has a non-string there is an :class:`InputError` naming file and line.
- Text (``.txt``): the whole file is one document, byte for byte (its trailing newline
  included, an empty file is one empty document); with ``lines=True`` every line is one
  document, without its ``\\n`` (or ``\\r\\n``) ending, and empty lines are skipped (they still
  count for line numbers).
- Parquet: the string column ``field``, one document per row, read with pyarrow when it is
  installed (``pip install 'bpetok[parquet]'``).
- Text is UTF-8; a leading UTF-8 byte order mark is dropped. Invalid UTF-8 is an
  :class:`InputError` with file and line, or with ``errors="replace"`` each maximal invalid
  sequence becomes U+FFFD (Python's ``bytes.decode(..., "replace")``).

Every file is read as a stream in 1 MiB blocks, so memory stays bounded by the longest line
(or the document, for whole-file text). While reading, each file's raw (still compressed) bytes
are counted and hashed: :class:`InputFile` holds the size, sha256 and document count that the
manifest of ``bpetok pack`` records.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import json
import os
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, NamedTuple, cast

__all__ = [
    "FORMATS",
    "Document",
    "InputError",
    "InputFile",
    "InputReader",
    "Record",
    "encodable_text",
    "jsonl_line_document",
    "resolve_inputs",
]

FORMATS = ("auto", "jsonl", "text", "parquet")
ERRORS = ("strict", "replace")
_KINDS = {".jsonl": "jsonl", ".json": "jsonl", ".txt": "text", ".parquet": "parquet"}
_COMPRESSIONS = {".gz": "gzip", ".zst": "zstd"}
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_BOM = b"\xef\xbb\xbf"
READ_SIZE = 1 << 20
PARQUET_HINT = "pip install 'bpetok[parquet]' (or pip install 'pyarrow>=14')"


class InputError(Exception):
    """A problem with an input; the message starts with the file, and line or row, it is about."""


class Document(NamedTuple):
    """One document: its text and where it came from (``FILE:LINE``, ``FILE``, ``FILE:row N``)."""

    text: str
    source: str


class Record(NamedTuple):
    """One JSON object of a JSONL input and where it came from (``FILE:LINE``)."""

    value: dict[str, Any]
    source: str


@dataclass
class InputFile:
    """One input file and, once it has been read through, what the manifest records of it."""

    path: str
    """As given on the command line or found in a directory; ``-`` for stdin."""
    kind: str
    """``jsonl``, ``text`` or ``parquet``."""
    compression: str | None
    """``gzip``, ``zstd`` or None."""
    size: int | None
    """Size in bytes on disk (None for stdin until it has been read; then the bytes read)."""
    sha256: str | None = None
    """Hex sha256 of the raw (compressed) bytes, set when the file has been read to its end."""
    documents: int = 0
    """Documents (or records) read from this file so far."""
    bytes_read: int = 0
    """Raw (compressed) bytes read so far."""

    @property
    def name(self) -> str:
        """The name used in messages: the path, or ``<stdin>``."""
        return "<stdin>" if self.path == "-" else self.path


def kind_of(name: str) -> tuple[str, str | None] | None:
    """``(kind, compression)`` from a file name, or None when the name is not an input's."""
    lower = name.lower()
    compression = None
    for ext, comp in _COMPRESSIONS.items():
        if lower.endswith(ext):
            compression = comp
            lower = lower[: -len(ext)]
            break
    for ext, kind in _KINDS.items():
        if lower.endswith(ext):
            return kind, compression
    return None


def _walk(directory: str) -> list[str]:
    """The input files under ``directory``, sorted by path components."""
    found: list[tuple[tuple[str, ...], str]] = []

    def onerror(err: OSError) -> None:
        raise InputError(f"{err.filename}: {err.strerror}")

    for root, dirs, files in os.walk(directory, onerror=onerror):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = os.path.relpath(root, directory)
        parts = () if rel == "." else tuple(rel.split(os.sep))
        for name in files:
            if not name.startswith(".") and kind_of(name) is not None:
                found.append(((*parts, name), os.path.join(root, name)))
    found.sort()
    return [path for _, path in found]


def resolve_inputs(inputs: Sequence[str], input_format: str = "auto") -> list[InputFile]:
    """The files that ``inputs`` name, in order, directories expanded (see the module notes)."""
    if input_format not in FORMATS:
        raise ValueError(f"input_format must be one of {FORMATS}, got {input_format!r}")
    files: list[InputFile] = []
    stdin_seen = False
    for given in inputs:
        if given == "-":
            if stdin_seen:
                raise InputError("-: stdin given more than once")
            stdin_seen = True
            kind = "jsonl" if input_format == "auto" else input_format
            files.append(InputFile("-", kind, None, None))
            continue
        if os.path.isdir(given):
            paths = _walk(given)
            if not paths:
                raise InputError(
                    f"{given}: no input files in this directory "
                    "(.jsonl, .json, .txt or .parquet, optionally .gz or .zst)"
                )
        elif os.path.exists(given):
            paths = [given]
        else:
            raise InputError(f"{given}: no such file or directory")
        for path in paths:
            found = kind_of(path)
            if input_format != "auto":
                files.append(InputFile(path, input_format, found[1] if found else None, None))
            elif found is None:
                raise InputError(
                    f"{path}: cannot tell the kind of input from its name: name it .jsonl, .json, "
                    ".txt or .parquet (optionally .gz or .zst), or pass --input-format"
                )
            else:
                files.append(InputFile(path, found[0], found[1], None))
            try:
                files[-1].size = os.path.getsize(path)
            except OSError as err:
                raise InputError(f"{path}: {err.strerror}") from None
    return files


class _CountingReader(io.RawIOBase):
    """Reads the raw bytes of one input, hashing and counting them as they pass."""

    def __init__(self, raw: IO[bytes], file: InputFile, on_bytes: Callable[[int], None] | None) -> None:
        super().__init__()
        self._raw = raw
        self._file = file
        self._on_bytes = on_bytes
        self._sha = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self._sha.update(memoryview(buffer)[:n])
            self._file.bytes_read += n
            if self._on_bytes is not None:
                self._on_bytes(n)
        return int(n or 0)

    def finish(self) -> None:
        """Reads what is left (so the hash covers the whole file) and records size and hash."""
        while self.read(READ_SIZE):
            pass
        self._file.sha256 = self._sha.hexdigest()
        if self._file.size is None:
            self._file.size = self._file.bytes_read


class _Prefixed(io.RawIOBase):
    """``head``, then the rest of ``raw``."""

    def __init__(self, head: bytes, raw: io.RawIOBase) -> None:
        super().__init__()
        self._head = head
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return int(self._raw.readinto(buffer) or 0)


def _decompressed(counted: io.RawIOBase, compression: str | None, name: str) -> IO[bytes]:
    buffered = io.BufferedReader(counted, READ_SIZE)
    if compression is None:
        return buffered
    if compression == "gzip":
        return cast(IO[bytes], gzip.GzipFile(fileobj=buffered, mode="rb"))
    try:
        import zstandard
    except ImportError:
        raise InputError(f"{name}: reading .zst needs the zstandard package: pip install zstandard") from None
    return io.BufferedReader(_ZstdFrames(buffered, zstandard), READ_SIZE)


class _ZstdFrames(io.RawIOBase):
    """The data of zstd frames one after another (skippable frames included). Unlike
    ``ZstdDecompressor.stream_reader``, an input that ends inside a frame is an error, not
    silently short."""

    def __init__(self, raw: IO[bytes], zstandard: Any) -> None:
        super().__init__()
        self._raw = raw
        self._dctx = zstandard.ZstdDecompressor()
        self._error: type[Exception] = zstandard.ZstdError
        self._frame: Any = None  # the decompressor of the frame being read, if inside one
        self._out = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._out:
            chunk = self._raw.read(READ_SIZE)
            if not chunk:
                if self._frame is not None:
                    raise self._error("the input ends inside a zstd frame (a truncated file?)")
                return 0
            self._out = memoryview(self._decompress(chunk))
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def _decompress(self, chunk: bytes) -> bytes:
        parts = []
        while chunk:
            if self._frame is None:
                self._frame = self._dctx.decompressobj()
            parts.append(self._frame.decompress(chunk))
            chunk = b""
            if self._frame.eof:
                chunk = self._frame.unused_data
                self._frame = None
        return b"".join(parts)


def _decode_error(name: str, lineno: int, err: UnicodeDecodeError, line: bytes) -> InputError:
    column = err.start + 1
    if lineno:  # whole-file text: find the line of the offending byte
        where = f"{name}:{lineno}"
    else:
        before = line[: err.start]
        newline = b"\n"
        where = f"{name}:{before.count(newline) + 1}"
        column = err.start - (before.rfind(newline) + 1) + 1
    return InputError(
        f"{where}: invalid UTF-8 (byte 0x{line[err.start]:02x} at column {column}); "
        "pass --errors replace to read invalid bytes as U+FFFD"
    )


_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number"}


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _json_int(digits: str) -> int | float:
    # Python refuses to convert integers of more than 4300 digits (sys.set_int_max_str_digits);
    # JSON has no such limit, and bpetok only needs the text field, so take such a number as a
    # float (inf) rather than fail the line.
    return int(digits) if len(digits) <= 4000 else float(digits)


def _json_record(name: str, lineno: int, text: str) -> dict[str, Any] | None:
    """The JSON object on a JSONL line, or None for a blank line."""
    try:
        value = json.loads(text, parse_int=_json_int)
    except json.JSONDecodeError as err:
        if not text.strip():
            return None
        raise InputError(f"{name}:{lineno}: invalid JSON: {err.msg} (column {err.colno})") from None
    except RecursionError:
        raise InputError(f"{name}:{lineno}: cannot read this JSON: it is nested too deeply") from None
    if not isinstance(value, dict):
        raise InputError(f"{name}:{lineno}: expected a JSON object, got {_json_type(value)}")
    return value


def _field_text(value: dict[str, Any], field: str, source: str) -> str:
    try:
        text = value[field]
    except KeyError:
        have = ", ".join(repr(k) for k in list(value)[:8]) or "none"
        raise InputError(
            f"{source}: record has no field {field!r} (its fields: {have}); name the text field with --field"
        ) from None
    if not isinstance(text, str):
        raise InputError(f"{source}: field {field!r} is {_json_type(text)}, not a string")
    return text


def lone_surrogates_replaced(text: str) -> str:
    """``text`` with every lone surrogate (from a JSON ``\\uD800`` escape) as one U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def encodable_text(text: str, source: str, errors: str) -> str:
    """``text`` if it has a UTF-8 form; else (a lone surrogate from a JSON escape) an
    :class:`InputError` naming ``source``, or with ``errors="replace"`` each one as U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError as err:
        if errors == "replace":
            return lone_surrogates_replaced(text)
        raise InputError(
            f"{source}: lone surrogate U+{ord(text[err.start]):04X} in the text "
            "(a JSON \\u escape that is half of a pair); pass --errors replace to read it as U+FFFD"
        ) from None


def jsonl_line_document(name: str, lineno: int, text: str, field: str, errors: str) -> str | None:
    """The document on one JSONL line (already decoded from UTF-8), None for a blank line, or
    an :class:`InputError`: the rules of :class:`InputReader`, lone surrogates included. The Rust
    reader of ``bpetok pack`` asks this about every line its own parser does not take."""
    value = _json_record(name, lineno, text)
    if value is None:
        return None
    source = f"{name}:{lineno}"
    return encodable_text(_field_text(value, field, source), source, errors)


class InputReader:
    """Reads documents (or JSON records) from inputs, in order, with per-file accounting.

    ``inputs`` are paths or ``-``; ``field`` names the text field of JSONL and the column of
    Parquet; ``lines`` makes every line of a text file a document; ``errors`` is ``"strict"``
    (invalid UTF-8 is an :class:`InputError`) or ``"replace"``; ``on_bytes`` is called with the
    number of raw bytes read, as they are read (for a progress bar whose total is
    :attr:`total_size`). Files are resolved when the reader is made, so a missing file is
    reported before anything is read.
    """

    def __init__(
        self,
        inputs: Sequence[str],
        *,
        field: str = "text",
        lines: bool = False,
        errors: str = "strict",
        input_format: str = "auto",
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        if errors not in ERRORS:
            raise ValueError(f"errors must be one of {ERRORS}, got {errors!r}")
        self.files = resolve_inputs(inputs, input_format)
        self.field = field
        self.lines = lines
        self.errors = errors
        self.on_bytes = on_bytes

    @classmethod
    def from_files(
        cls,
        files: list[InputFile],
        *,
        field: str = "text",
        lines: bool = False,
        errors: str = "strict",
        on_bytes: Callable[[int], None] | None = None,
    ) -> InputReader:
        """A reader of ``files`` already resolved (by another reader); their accounting is
        updated in place as they are read."""
        reader = cls([], field=field, lines=lines, errors=errors, on_bytes=on_bytes)
        reader.files = files
        return reader

    @property
    def total_size(self) -> int | None:
        """Raw bytes of all inputs, or None when stdin is one of them."""
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)

    @property
    def bytes_read(self) -> int:
        """Raw bytes read so far, over all inputs."""
        return sum(f.bytes_read for f in self.files)

    @property
    def documents_read(self) -> int:
        return sum(f.documents for f in self.files)

    def __iter__(self) -> Iterator[Document]:
        return self.documents()

    def documents(self) -> Iterator[Document]:
        """Every document of every input, in order."""
        for file in self.files:
            if file.kind == "jsonl":
                yield from self._jsonl_documents(file)
            elif file.kind == "text":
                yield from self._text_documents(file)
            else:
                yield from self._parquet_documents(file)

    def records(self) -> Iterator[Record]:
        """Every JSON object of every input, in order; every input must be JSONL."""
        for file in self.files:
            if file.kind != "jsonl":
                raise InputError(f"{file.name}: expected JSONL, this is {file.kind}")
            yield from self._records(file)

    # ---- reading one file ---------------------------------------------------------------------

    def _open(self, file: InputFile) -> tuple[_CountingReader, IO[bytes], IO[bytes] | None]:
        """(counting raw reader, decompressed stream, file to close)."""
        if file.path != "-":
            try:
                raw = open(file.path, "rb", buffering=0)
            except OSError as err:
                raise InputError(f"{file.name}: {err.strerror}") from None
            counted = _CountingReader(raw, file, self.on_bytes)
            return counted, _decompressed(counted, file.compression, file.name), raw
        counted = _CountingReader(sys.stdin.buffer, file, self.on_bytes)
        # Detection needs the first 4 bytes, which a pipe may deliver over several reads; they
        # are read (and counted) here and put back in front of the rest.
        head = b""
        while len(head) < 4:
            chunk = counted.read(4 - len(head))
            if not chunk:
                break
            head += chunk
        if head.startswith(_GZIP_MAGIC):
            file.compression = "gzip"
        elif head.startswith(_ZSTD_MAGIC):
            file.compression = "zstd"
        return counted, _decompressed(_Prefixed(head, counted), file.compression, file.name), None

    def _lines(self, file: InputFile) -> Iterator[tuple[int, bytes]]:
        """(line number, raw line) of a file, the first line's byte order mark dropped."""
        counted, stream, to_close = self._open(file)
        try:
            lineno = 0
            try:
                for lineno, line in enumerate(stream, 1):
                    yield lineno, line[3:] if lineno == 1 and line.startswith(_BOM) else line
                counted.finish()
            except (OSError, EOFError, zlib.error) as err:
                raise InputError(
                    f"{file.name}:{lineno + 1}: cannot read ({file.compression or 'file'}): {err}"
                ) from None
            except Exception as err:
                if type(err).__name__ == "ZstdError":
                    raise InputError(f"{file.name}:{lineno + 1}: cannot read (zstd): {err}") from None
                raise
        finally:
            stream.close()
            if to_close is not None:
                to_close.close()

    def _records(self, file: InputFile) -> Iterator[Record]:
        errors = self.errors
        name = file.name
        for lineno, line in self._lines(file):
            try:
                text = line.decode("utf-8", errors)
            except UnicodeDecodeError as err:
                raise _decode_error(name, lineno, err, line) from None
            value = _json_record(name, lineno, text)
            if value is not None:
                file.documents += 1
                yield Record(value, f"{name}:{lineno}")

    def _jsonl_documents(self, file: InputFile) -> Iterator[Document]:
        field = self.field
        for value, source in self._records(file):
            yield Document(_field_text(value, field, source), source)

    def _text_documents(self, file: InputFile) -> Iterator[Document]:
        errors = self.errors
        name = file.name
        if self.lines:
            for lineno, line in self._lines(file):
                if line.endswith(b"\n"):
                    line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
                if not line:
                    continue
                try:
                    text = line.decode("utf-8", errors)
                except UnicodeDecodeError as err:
                    raise _decode_error(name, lineno, err, line) from None
                file.documents += 1
                yield Document(text, f"{name}:{lineno}")
            return
        data = b"".join(line for _, line in self._lines(file))
        try:
            text = data.decode("utf-8", errors)
        except UnicodeDecodeError as err:
            raise _decode_error(name, 0, err, data) from None
        del data
        file.documents += 1
        yield Document(text, name)

    def _parquet_documents(self, file: InputFile) -> Iterator[Document]:
        name = file.name
        try:
            pq = importlib.import_module("pyarrow.parquet")
            pa = importlib.import_module("pyarrow")
        except ImportError:
            raise InputError(
                f"{name}: reading Parquet needs pyarrow, which is not installed: {PARQUET_HINT}"
            ) from None
        # Parquet needs random access: hash the raw bytes in one streaming pass (to a temporary
        # file when they must be decompressed or come from stdin), then let pyarrow read.
        counted, stream, to_close = self._open(file)
        spool: IO[bytes] | None = None
        try:
            try:
                if file.compression is None and file.path != "-":
                    counted.finish()
                    source: Any = file.path
                else:
                    spool = tempfile.TemporaryFile()
                    while chunk := stream.read(READ_SIZE):
                        spool.write(chunk)
                    counted.finish()
                    spool.seek(0)
                    source = spool
            except (OSError, EOFError, zlib.error) as err:
                raise InputError(f"{name}: cannot read ({file.compression or 'file'}): {err}") from None
            finally:
                stream.close()
                if to_close is not None:
                    to_close.close()
            try:
                parquet = pq.ParquetFile(source)
                schema = parquet.schema_arrow
                if self.field not in schema.names:
                    columns = ", ".join(map(repr, schema.names))
                    raise InputError(
                        f"{name}: no column {self.field!r} (its columns: {columns}); "
                        "name the text column with --field"
                    )
                column_type = schema.field(self.field).type
                if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):
                    raise InputError(f"{name}: column {self.field!r} is {column_type}, not a string column")
                row = 0
                for batch in parquet.iter_batches(batch_size=4096, columns=[self.field]):
                    texts = batch.column(0).to_pylist()
                    for text in texts:
                        row += 1
                        if text is None:
                            raise InputError(f"{name}:row {row}: column {self.field!r} is null")
                        file.documents += 1
                        yield Document(text, f"{name}:row {row}")
            except pa.ArrowException as err:
                raise InputError(f"{name}: cannot read Parquet: {err}") from None
        finally:
            if spool is not None:
                spool.close()
