"""Megatron-LM's indexed dataset files (``PREFIX.bin`` / ``PREFIX.idx``): a writer and a reader.

The layout is the one NVIDIA/Megatron-LM's ``megatron/core/datasets/indexed_dataset.py`` writes and
reads (``_IndexWriter``, ``_IndexReader``, ``IndexedDatasetBuilder``; version 1, not
multimodal). All integers are little-endian, nothing is padded:

``PREFIX.idx``::

    offset 0   9 bytes  magic b"MMIDIDX\\x00\\x00"
    offset 9   u64      version, 1
    offset 17  u8       dtype code of the tokens: 1 uint8, 2 int8, 3 int16, 4 int32, 5 int64,
                        6 float64, 7 float32, 8 uint16
    offset 18  u64      sequence count S
    offset 26  u64      document count D, which is the length of the document index array
                        (the number of documents + 1, since it starts with 0)
    offset 34  int32[S] sequence lengths, in tokens
               int64[S] sequence pointers: byte offset of each sequence in PREFIX.bin
               int64[D] document indices: 0, then after each document the number of sequences
                        so far (document d is sequences document_indices[d] .. [d + 1] - 1)

``PREFIX.bin``: the tokens of every sequence back to back, in the dtype of the code.

bpetok writes one sequence per document (so the document indices are 0, 1, ..., S), tokens
in the smallest unsigned dtype that holds every id (uint16 up to 65,536 pieces, else int32,
which Megatron has no unsigned 32-bit code for). Both files are written under temporary
names and renamed when complete, ``.idx`` last: a prefix whose ``.idx`` exists is complete.
"""

from __future__ import annotations

import os
import struct
import tempfile
from array import array
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["DTYPE_CODES", "MAGIC", "VERSION", "MegatronDataset", "MegatronWriter", "dtype_for_vocab"]

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
HEADER_SIZE = 34
DTYPE_CODES: dict[int, str] = {
    1: "uint8",
    2: "int8",
    3: "int16",
    4: "int32",
    5: "int64",
    6: "float64",
    7: "float32",
    8: "uint16",
}
_CODE_OF = {name: code for code, name in DTYPE_CODES.items()}
_CHUNK = 1 << 20  # index entries converted to bytes at a time


def dtype_for_vocab(vocab_size: int) -> str:
    """The smallest Megatron token dtype that holds ids ``0 .. vocab_size - 1``."""
    if vocab_size <= 1 << 8:
        return "uint8"
    if vocab_size <= 1 << 16:
        return "uint16"
    if vocab_size <= 1 << 31:
        return "int32"
    return "int64"


def _temp_beside(path: str) -> str:
    directory, base = os.path.split(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=directory)
    os.close(fd)
    umask = os.umask(0)  # mkstemp makes the file 0600; give it the mode a new file gets
    os.umask(umask)
    os.chmod(temp, 0o666 & ~umask)
    return temp


class MegatronWriter:
    """Writes ``PREFIX.bin`` / ``PREFIX.idx``, one sequence per document.

    Use as a context manager: the files appear under their names only when the block ends
    without an exception; otherwise (or after :meth:`abort`) the temporary files are removed.
    The writer keeps 4 bytes per document in memory for the index. ``make_temp(path)`` makes
    the empty temporary file that becomes ``path`` (default: one beside it).
    """

    def __init__(
        self,
        prefix: str | os.PathLike[str],
        dtype: str,
        *,
        make_temp: Callable[[str], str] | None = None,
    ) -> None:
        if dtype not in _CODE_OF:
            raise ValueError(f"dtype must be one of {sorted(_CODE_OF)}, got {dtype!r}")
        self.prefix = os.fspath(prefix)
        self.dtype = dtype
        self.bin_path = self.prefix + ".bin"
        self.idx_path = self.prefix + ".idx"
        self._lengths = array("i")  # int32, as the index stores them
        self._make_temp = make_temp or _temp_beside
        self._bin_temp = self._make_temp(self.bin_path)
        self._idx_temp: str | None = None
        self._bin: Any = open(self._bin_temp, "wb")
        self._done = False

    @property
    def documents(self) -> int:
        return len(self._lengths)

    def add_documents(self, ids: npt.ArrayLike, offsets: npt.ArrayLike) -> None:
        """Adds documents given as one flat id array and ``len + 1`` offsets into it."""
        import numpy as np

        flat = np.asarray(ids)
        bounds = np.asarray(offsets, dtype=np.int64)
        lengths = np.diff(bounds)
        if len(lengths) and int(lengths.max()) > 0x7FFF_FFFF:
            raise ValueError(
                "a document has more than 2**31 - 1 tokens, more than Megatron's int32 lengths hold"
            )
        data = flat[int(bounds[0]) : int(bounds[-1])] if len(bounds) else flat[:0]
        self._bin.write(np.ascontiguousarray(data, dtype=np.dtype(self.dtype).newbyteorder("<")).tobytes())
        self._lengths.frombytes(lengths.astype(np.int32).tobytes())

    def add_document(self, ids: npt.ArrayLike) -> None:
        """Adds one document (one sequence)."""
        import numpy as np

        flat = np.asarray(ids)
        self.add_documents(flat, np.array([0, len(flat)], dtype=np.int64))

    def close(self) -> None:
        """Writes the index and puts both files in place."""
        import numpy as np

        if self._done:
            return
        self._bin.close()
        count = len(self._lengths)
        itemsize = np.dtype(self.dtype).itemsize
        self._idx_temp = self._make_temp(self.idx_path)
        with open(self._idx_temp, "wb") as idx:
            idx.write(MAGIC)
            idx.write(struct.pack("<Q", VERSION))
            idx.write(struct.pack("<B", _CODE_OF[self.dtype]))
            idx.write(struct.pack("<Q", count))
            idx.write(struct.pack("<Q", count + 1))
            lengths = np.frombuffer(self._lengths, dtype=np.int32) if count else np.zeros(0, np.int32)
            for start in range(0, count, _CHUNK):
                idx.write(lengths[start : start + _CHUNK].astype("<i4").tobytes())
            pointer = 0
            for start in range(0, count, _CHUNK):
                sizes = lengths[start : start + _CHUNK].astype(np.int64) * itemsize
                ends = np.cumsum(sizes) + pointer
                idx.write((ends - sizes).astype("<i8").tobytes())
                pointer = int(ends[-1])
            for start in range(0, count + 1, _CHUNK):
                idx.write(np.arange(start, min(start + _CHUNK, count + 1), dtype="<i8").tobytes())
        # An old .idx beside the new .bin would look complete: remove it first, put .idx last.
        if os.path.exists(self.idx_path):
            os.remove(self.idx_path)
        os.replace(self._bin_temp, self.bin_path)
        os.replace(self._idx_temp, self.idx_path)
        self._done = True

    def abort(self) -> None:
        """Removes the temporary files; nothing is left under the prefix's names."""
        if self._done:
            return
        self._done = True
        self._bin.close()
        for temp in (self._bin_temp, self._idx_temp):
            if temp is not None:
                try:
                    os.remove(temp)
                except FileNotFoundError:
                    pass

    def __enter__(self) -> MegatronWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            try:
                self.close()
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()


class MegatronDataset:
    """Reads ``PREFIX.bin`` / ``PREFIX.idx`` memory-mapped, checking them against the layout.

    ``ds[i]`` is sequence ``i`` as a read-only numpy array (a view of the mapped ``.bin``);
    :attr:`sequence_lengths`, :attr:`sequence_pointers` and :attr:`document_indices` are the
    index arrays; :meth:`document` gives the sequences of one document concatenated. Raises
    ``ValueError`` naming the file when something does not match the layout.
    """

    def __init__(self, prefix: str | os.PathLike[str]) -> None:
        import numpy as np

        self.prefix = os.fspath(prefix)
        idx_path = self.prefix + ".idx"
        bin_path = self.prefix + ".bin"
        with open(idx_path, "rb") as f:
            header = f.read(HEADER_SIZE)
        if len(header) < HEADER_SIZE or header[:9] != MAGIC:
            raise ValueError(f"{idx_path}: not a Megatron index (no MMIDIDX header)")
        (version,) = struct.unpack_from("<Q", header, 9)
        if version != VERSION:
            raise ValueError(f"{idx_path}: index version {version}, expected {VERSION}")
        code = header[17]
        if code not in DTYPE_CODES:
            raise ValueError(f"{idx_path}: unknown dtype code {code}")
        self.dtype: np.dtype[Any] = np.dtype(DTYPE_CODES[code]).newbyteorder("<")
        sequences, documents = struct.unpack_from("<QQ", header, 18)
        expected = HEADER_SIZE + 4 * sequences + 8 * sequences + 8 * documents
        idx_size = os.path.getsize(idx_path)
        if idx_size not in (expected, expected + sequences):  # + int8 modes when multimodal
            raise ValueError(f"{idx_path}: {idx_size} bytes, the header implies {expected}")
        index = np.memmap(idx_path, dtype=np.uint8, mode="r")
        offset = HEADER_SIZE
        self.sequence_lengths: np.ndarray = np.frombuffer(index, "<i4", sequences, offset)
        offset += 4 * sequences
        self.sequence_pointers: np.ndarray = np.frombuffer(index, "<i8", sequences, offset)
        offset += 8 * sequences
        self.document_indices: np.ndarray = np.frombuffer(index, "<i8", documents, offset)
        bin_size = os.path.getsize(bin_path)
        if sequences:
            last = int(self.sequence_pointers[-1]) + int(self.sequence_lengths[-1]) * self.dtype.itemsize
            if last > bin_size:
                raise ValueError(f"{bin_path}: {bin_size} bytes, the index points to byte {last}")
        if documents and int(self.document_indices[-1]) != sequences:
            raise ValueError(f"{idx_path}: the last document index is not the sequence count")
        if bin_size:
            self._tokens: np.ndarray = np.memmap(bin_path, dtype=np.uint8, mode="r")
        else:
            self._tokens = np.zeros(0, dtype=np.uint8)

    def __len__(self) -> int:
        """The number of sequences."""
        return len(self.sequence_lengths)

    @property
    def num_documents(self) -> int:
        return max(0, len(self.document_indices) - 1)

    def __getitem__(self, i: int) -> np.ndarray:
        import numpy as np

        if not -len(self) <= i < len(self):
            raise IndexError(f"sequence {i} out of range: {len(self)} sequences")
        i %= len(self)
        return np.frombuffer(
            self._tokens, self.dtype, int(self.sequence_lengths[i]), int(self.sequence_pointers[i])
        )

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))

    def document(self, d: int) -> np.ndarray:
        """The tokens of document ``d`` (all its sequences, concatenated)."""
        import numpy as np

        start, end = int(self.document_indices[d]), int(self.document_indices[d + 1])
        parts = [self[i] for i in range(start, end)]
        return np.concatenate(parts) if parts else np.zeros(0, self.dtype)
