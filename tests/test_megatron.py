"""bpetok.megatron: Megatron-LM .bin/.idx written exactly in its documented layout.

The layout (NVIDIA/Megatron-LM, megatron/core/datasets/indexed_dataset.py, _IndexWriter):
magic b"MMIDIDX\\x00\\x00", u64 version 1, u8 dtype code, u64 sequence count, u64 document
count (length of the document index array), int32 sequence lengths, int64 sequence byte
pointers, int64 document indices; little-endian, unpadded. The checks below spell it out with
literal numbers and plain ``struct``, independently of the module's constants.
"""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import numpy as np
import pytest
from bpetok.megatron import MegatronDataset, MegatronWriter, dtype_for_vocab


def _docs(seed: int, n: int, vocab: int = 32000) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(vocab) for _ in range(rng.choice([0, 1, 2, 7, 300]))] for _ in range(n)]


def _write(prefix: Path, docs: list[list[int]], vocab_size: int = 32000) -> None:
    with MegatronWriter(prefix, vocab_size) as writer:
        # half through the flat-batch API, half one by one
        half = len(docs) // 2
        flat = np.array([i for d in docs[:half] for i in d], dtype=np.uint32)
        offsets = np.cumsum([0] + [len(d) for d in docs[:half]])
        writer.add_documents(flat, offsets)
        for d in docs[half:]:
            writer.add_document(np.array(d, dtype=np.int64))


def read_independently(prefix: Path) -> tuple[int, list[list[int]], list[int]]:
    """A reader written from the documented layout alone: (dtype code, sequences, doc indices)."""
    idx = (prefix.parent / (prefix.name + ".idx")).read_bytes()
    data = (prefix.parent / (prefix.name + ".bin")).read_bytes()
    assert idx[0:9] == b"MMIDIDX\x00\x00"
    assert struct.unpack("<Q", idx[9:17]) == (1,)
    code = idx[17]
    n_seq, n_doc = struct.unpack("<QQ", idx[18:34])
    pos = 34
    lengths = struct.unpack(f"<{n_seq}i", idx[pos : pos + 4 * n_seq])
    pos += 4 * n_seq
    pointers = struct.unpack(f"<{n_seq}q", idx[pos : pos + 8 * n_seq])
    pos += 8 * n_seq
    doc_index = list(struct.unpack(f"<{n_doc}q", idx[pos : pos + 8 * n_doc]))
    pos += 8 * n_doc
    assert pos == len(idx)
    fmt, size = {8: ("H", 2), 4: ("i", 4), 1: ("B", 1)}[code]
    sequences = [
        list(struct.unpack(f"<{n}{fmt}", data[p : p + n * size]))
        for n, p in zip(lengths, pointers, strict=True)
    ]
    return code, sequences, doc_index


def test_round_trip_through_both_readers(tmp_path: Path) -> None:
    docs = _docs(1, 200)
    prefix = tmp_path / "corpus"
    _write(prefix, docs)
    code, sequences, doc_index = read_independently(prefix)
    assert code == 8  # uint16
    assert sequences == docs
    assert doc_index == list(range(len(docs) + 1))
    ds = MegatronDataset(prefix)
    assert len(ds) == ds.num_documents == len(docs)
    assert ds.dtype == np.dtype("<u2")
    assert [ds[i].tolist() for i in range(len(ds))] == docs
    assert ds.document(3).tolist() == docs[3]
    assert ds[-1].tolist() == docs[-1]
    with pytest.raises(IndexError):
        ds[len(docs)]


def test_index_bytes_match_the_layout_byte_by_byte(tmp_path: Path) -> None:
    prefix = tmp_path / "small"
    _write(prefix, [[5, 6, 7], [], [65535]])
    expected = (
        b"MMIDIDX\x00\x00"  # magic
        + b"\x01\x00\x00\x00\x00\x00\x00\x00"  # version 1, u64
        + b"\x08"  # dtype code 8 = uint16
        + b"\x03\x00\x00\x00\x00\x00\x00\x00"  # 3 sequences
        + b"\x04\x00\x00\x00\x00\x00\x00\x00"  # 4 document indices
        + b"\x03\x00\x00\x00"
        + b"\x00\x00\x00\x00"
        + b"\x01\x00\x00\x00"  # lengths, int32
        + (0).to_bytes(8, "little")
        + (6).to_bytes(8, "little")
        + (6).to_bytes(8, "little")  # byte pointers
        + b"".join(i.to_bytes(8, "little") for i in (0, 1, 2, 3))  # document indices
    )
    assert (tmp_path / "small.idx").read_bytes() == expected
    assert (tmp_path / "small.bin").read_bytes() == b"\x05\x00\x06\x00\x07\x00\xff\xff"


def test_empty_dataset(tmp_path: Path) -> None:
    prefix = tmp_path / "empty"
    _write(prefix, [])
    assert read_independently(prefix) == (8, [], [0])
    ds = MegatronDataset(prefix)
    assert len(ds) == 0 and ds.num_documents == 0


def test_int32_for_large_vocabularies(tmp_path: Path) -> None:
    docs = _docs(2, 20, vocab=200_000)
    _write(tmp_path / "big", docs, 200_000)
    code, sequences, _ = read_independently(tmp_path / "big")
    assert code == 4 and sequences == docs
    assert [x.tolist() for x in MegatronDataset(tmp_path / "big")] == docs


def test_smallest_dtype_that_holds_the_vocabulary() -> None:
    assert dtype_for_vocab(256) == "uint16"  # a byte-fallback model has at least 257 pieces
    assert dtype_for_vocab(257) == "uint16"
    assert dtype_for_vocab(32000) == "uint16"
    assert dtype_for_vocab(65536) == "uint16"
    assert dtype_for_vocab(65537) == "int32"
    assert dtype_for_vocab(2**31) == "int32"
    assert dtype_for_vocab(2**31 + 1) == "int64"


def test_failure_leaves_nothing_and_keeps_no_stale_index(tmp_path: Path) -> None:
    prefix = tmp_path / "out"
    with pytest.raises(RuntimeError), MegatronWriter(prefix, 32000) as writer:
        writer.add_document([1, 2, 3])
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    # A new dataset replaces an old one; both files change together.
    _write(prefix, [[1]])
    _write(prefix, [[2, 3]])
    assert sorted(os.listdir(tmp_path)) == ["out.bin", "out.idx"]
    assert [x.tolist() for x in MegatronDataset(prefix)] == [[2, 3]]


def test_reader_rejects_what_is_not_the_layout(tmp_path: Path) -> None:
    prefix = tmp_path / "x"
    _write(prefix, [[1, 2]])
    idx = tmp_path / "x.idx"
    good = idx.read_bytes()
    idx.write_bytes(b"NOTMAGIC\x00" + good[9:])
    with pytest.raises(ValueError, match="not a Megatron index"):
        MegatronDataset(prefix)
    idx.write_bytes(good[:-8])
    with pytest.raises(ValueError, match="bytes, the header implies"):
        MegatronDataset(prefix)
    idx.write_bytes(good)
    (tmp_path / "x.bin").write_bytes(b"\x01")
    with pytest.raises(ValueError, match="the index points to byte 4"):
        MegatronDataset(prefix)
