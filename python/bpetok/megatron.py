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
in uint16 up to 65,536 pieces, else int32 (Megatron has no unsigned 32-bit code); the writer is
the Rust core's (``bpetok::data::megatron``), the reader is here. Both files are written under temporary
names and renamed when complete, ``.idx`` last: a prefix whose ``.idx`` exists is complete.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from bpetok import _bpetok

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


def dtype_for_vocab(vocab_size: int) -> str:
    """The Megatron token dtype for ids ``0 .. vocab_size - 1``: ``uint16`` up to 65,536 pieces,
    else ``int32`` (``int64`` past 2^31) — the core's rule (``bpetok::data::megatron``)."""
    return _bpetok.megatron_dtype_for(vocab_size)


class MegatronWriter:
    """Writes ``PREFIX.bin`` / ``PREFIX.idx``, one sequence per document, for a vocabulary of
    ``vocab_size`` pieces (which picks the dtype, :func:`dtype_for_vocab`). The writer is the
    Rust core's, the one ``bpetok encode --format megatron`` uses.

    Use as a context manager: the files appear under their names only when the block ends
    without an exception; otherwise (or after :meth:`abort`) the temporary files are removed.
    """

    def __init__(self, prefix: str | os.PathLike[str], vocab_size: int) -> None:
        self.prefix = os.fspath(prefix)
        self.bin_path = self.prefix + ".bin"
        self.idx_path = self.prefix + ".idx"
        self._writer = _bpetok.MegatronWriter(self.prefix, vocab_size)
        self.dtype: str = self._writer.dtype

    @property
    def documents(self) -> int:
        return self._writer.documents()

    def add_documents(self, ids: npt.ArrayLike, offsets: npt.ArrayLike) -> None:
        """Adds documents given as one flat id array and ``len + 1`` offsets into it."""
        import numpy as np

        flat = np.asarray(ids)
        if flat.size and (int(flat.min()) < 0 or int(flat.max()) > 0xFFFF_FFFF):
            raise ValueError("token ids must be between 0 and 2**32 - 1")
        bounds = np.asarray(offsets, dtype=np.int64)
        lengths = np.diff(bounds)
        if len(lengths) and int(lengths.max()) > 0x7FFF_FFFF:
            raise ValueError(
                "a document has more than 2**31 - 1 tokens, more than Megatron's int32 lengths hold"
            )
        self._writer.add_documents(
            np.ascontiguousarray(flat, dtype="<u4").tobytes(), np.ascontiguousarray(bounds, "<i8").tobytes()
        )

    def add_document(self, ids: npt.ArrayLike) -> None:
        """Adds one document (one sequence)."""
        import numpy as np

        flat = np.asarray(ids)
        self.add_documents(flat, np.array([0, len(flat)], dtype=np.int64))

    def close(self) -> None:
        """Writes the index and puts both files in place (``.idx`` last)."""
        self._writer.close()

    def abort(self) -> None:
        """Removes the temporary files; nothing is left under the prefix's names."""
        self._writer.abort()

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
