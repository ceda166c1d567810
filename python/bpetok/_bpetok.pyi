"""Type stub of the native module ``bpetok._bpetok`` (checked against it by mypy.stubtest)."""

import os
from collections.abc import Callable, Sequence
from typing import TypeAlias, final

__all__ = [
    "ModelError",
    "PackWriter",
    "Tokenizer",
    "__version__",
    "inspect_shards",
    "read_documents",
    "verify_shards",
]

_FileArg: TypeAlias = tuple[str | os.PathLike[str] | None, str, str, str | None]
"""(path or None for stdin, name for messages, "jsonl" or "text", "none"/"gzip"/"zstd" or None
to detect)."""
_Summary: TypeAlias = tuple[int, str, int, str]
"""(raw size, hex sha256, documents, compression)."""

__version__: str

class ModelError(ValueError):
    """The model file cannot be used: it is not a SentencePiece model, or not one bpetok implements."""

@final
class Tokenizer:
    """The native tokenizer. Use ``bpetok.Tokenizer``, which wraps it."""

    @staticmethod
    def from_bytes(data: bytes) -> Tokenizer: ...
    @staticmethod
    def mixtral_8x7b() -> Tokenizer: ...
    def model_bytes(self) -> bytes: ...
    def encode(self, text: str | bytes, add_bos: bool, add_eos: bool) -> list[int]: ...
    def encode_batch(
        self, texts: list[str | bytes], add_bos: bool, add_eos: bool, num_threads: int
    ) -> list[list[int]]: ...
    def encode_flat(self, text: str | bytes, add_bos: bool, add_eos: bool, itemsize: int) -> bytearray: ...
    def encode_batch_flat(
        self, texts: list[str | bytes], add_bos: bool, add_eos: bool, num_threads: int, itemsize: int
    ) -> tuple[bytearray, bytearray]: ...
    def encode_files(
        self,
        files: Sequence[_FileArg],
        *,
        field: str,
        lines: bool,
        errors: str,
        num_threads: int,
        add_bos: bool,
        add_eos: bool,
        itemsize: int,
        on_output: Callable[[bytes, bytes | None], object],
        progress: Callable[[int, int, int], object] | None = None,
        fallback: Callable[[str, int, str], str | None] | None = None,
    ) -> list[_Summary]: ...
    def encode_batch_jsonl(
        self, texts: Sequence[str | bytes], add_bos: bool, add_eos: bool, num_threads: int
    ) -> tuple[bytes, int]: ...
    def decode(self, ids: list[int]) -> str: ...
    def decode_batch(self, batch: list[list[int]], num_threads: int) -> list[str]: ...
    def encode_as_pieces(self, text: str | bytes, add_bos: bool, add_eos: bool) -> list[str]: ...
    def id_to_piece(self, id: int) -> str: ...
    def piece_to_id(self, piece: str) -> int: ...
    def vocab_size(self) -> int: ...
    def bos_id(self) -> int: ...
    def eos_id(self) -> int: ...
    def pad_id(self) -> int: ...
    def unk_id(self) -> int: ...

@final
class PackWriter:
    """One packing run: encode, pack and write shards. Used by ``bpetok pack``."""

    def __new__(
        cls,
        tokenizer: Tokenizer,
        out_dir: str | os.PathLike[str],
        *,
        seq_len: int,
        window: int,
        overlap: int | None,
        pack_buffer: int,
        seed: int,
        pad_id: int,
        samples_per_shard: int,
        add_bos: bool,
        add_eos: bool,
        overwrite: bool,
    ) -> PackWriter: ...
    def add_texts(self, texts: Sequence[str | bytes], num_threads: int) -> int: ...
    def add_files(
        self,
        files: Sequence[_FileArg],
        *,
        field: str,
        lines: bool,
        errors: str,
        num_threads: int,
        progress: Callable[[int, int, int], object] | None = None,
        fallback: Callable[[str, int, str], str | None] | None = None,
    ) -> list[_Summary]: ...
    def documents(self) -> int: ...
    def finish(
        self, tokenizer_sha256: str, inputs: list[tuple[str, int, str, int]], input_options_json: str
    ) -> str: ...
    def close(self) -> None: ...

def read_documents(
    files: Sequence[_FileArg],
    *,
    field: str,
    lines: bool,
    errors: str,
    fallback: Callable[[str, int, str], str | None] | None = None,
) -> tuple[list[str], list[_Summary]]: ...
def verify_shards(path: str | os.PathLike[str]) -> tuple[bool, str, list[str]]: ...
def inspect_shards(path: str | os.PathLike[str]) -> str: ...
