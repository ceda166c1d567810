"""Type stub of the native module ``bpetok._bpetok`` (checked against it by mypy.stubtest)."""

import os
from collections.abc import Callable, Sequence
from typing import Any, final

__all__ = [
    "DEFAULT_PACK_BUFFER",
    "DEFAULT_SAMPLES_PER_SHARD",
    "MANIFEST_FILE",
    "MAX_SEQ_LEN",
    "SHARD_FORMAT",
    "SHARD_FORMAT_VERSION",
    "MegatronWriter",
    "Tokenizer",
    "__version__",
    "check_tokenizer",
    "count_files",
    "decode_files",
    "default_threads",
    "encode_files",
    "finish_partitions",
    "input_kind",
    "inspect_shards",
    "megatron_dtype_for",
    "pack",
    "pack_partition",
    "plan_partitions",
    "prepare_partitioned",
    "verify_shards",
]

_Path = str | os.PathLike[str]
_Progress = Callable[[int, int | None, int, int], object] | None
"""progress(bytes_read, total_bytes or None, documents, tokens)"""

__version__: str
MAX_SEQ_LEN: int
DEFAULT_PACK_BUFFER: int
DEFAULT_SAMPLES_PER_SHARD: int
SHARD_FORMAT: str
SHARD_FORMAT_VERSION: int
MANIFEST_FILE: str

@final
class Tokenizer:
    """The native tokenizer. Use ``bpetok.Tokenizer``, which wraps it."""

    @staticmethod
    def from_bytes(data: bytes) -> Tokenizer: ...
    @staticmethod
    def mixtral_8x7b() -> Tokenizer: ...
    def model_bytes(self) -> bytes: ...
    def sha256(self) -> str: ...
    def token_dtype(self) -> str: ...
    def encode(self, text: str | bytes, add_bos: bool, add_eos: bool) -> list[int]: ...
    def encode_batch(
        self, texts: list[str | bytes], add_bos: bool, add_eos: bool, num_threads: int
    ) -> list[list[int]]: ...
    def count(self, text: str | bytes, add_bos: bool, add_eos: bool) -> int: ...
    def encode_chat(
        self, texts: list[str], format: str, train_on: str, num_threads: int
    ) -> list[tuple[list[int], list[bool]]]: ...
    def chat_format(self) -> str: ...
    def count_batch(
        self, texts: list[str | bytes], add_bos: bool, add_eos: bool, num_threads: int
    ) -> bytearray: ...
    def encode_flat(self, text: str | bytes, add_bos: bool, add_eos: bool) -> bytearray: ...
    def encode_batch_flat(
        self, texts: list[str | bytes], add_bos: bool, add_eos: bool, num_threads: int
    ) -> tuple[bytearray, bytearray]: ...
    def encode_offsets_flat(
        self, data: bytes, offsets: bytes, add_bos: bool, add_eos: bool, num_threads: int
    ) -> tuple[bytearray, bytearray]: ...
    def decode(self, ids: list[int]) -> str: ...
    def decode_flat(self, data: bytes, itemsize: int) -> str: ...
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
class MegatronWriter:
    """Megatron-LM ``.bin`` / ``.idx`` files. Use ``bpetok.megatron.MegatronWriter``."""

    def __new__(cls, prefix: _Path, vocab_size: int) -> MegatronWriter: ...
    @property
    def dtype(self) -> str: ...
    def documents(self) -> int: ...
    def add_documents(self, ids: bytes, offsets: bytes) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...

def megatron_dtype_for(vocab_size: int) -> str: ...
def pack(
    tokenizer: Tokenizer,
    inputs: Sequence[_Path],
    output: _Path,
    options: dict[str, Any],
    progress: _Progress,
) -> dict[str, Any]: ...
def plan_partitions(
    inputs: Sequence[str],
    *,
    input_format: str,
    lines: bool,
    partition_size: int,
    layouts: str | None = None,
) -> str: ...
def input_kind(name: str) -> tuple[str, str] | None: ...
def prepare_partitioned(
    tokenizer: Tokenizer, output: _Path, partitions: str, options: dict[str, Any]
) -> dict[str, Any] | None: ...
def pack_partition(
    tokenizer: Tokenizer,
    output: _Path,
    partition: str,
    options: dict[str, Any],
    *,
    local: Sequence[_Path] | None = None,
    attempt: str | None = None,
) -> dict[str, Any]: ...
def finish_partitions(
    tokenizer: Tokenizer, output: _Path, partitions: str, options: dict[str, Any]
) -> dict[str, Any]: ...
def encode_files(
    tokenizer: Tokenizer,
    inputs: Sequence[_Path],
    output: _Path | None,
    *,
    format: str,
    bos: bool,
    eos: bool,
    field: str,
    lines: bool,
    errors: str,
    input_format: str,
    num_threads: int,
    progress: _Progress,
    chat: str | None = None,
    train_on: str = "assistant",
) -> dict[str, Any]: ...
def decode_files(
    tokenizer: Tokenizer,
    inputs: Sequence[_Path],
    output: _Path | None,
    *,
    field: str,
    errors: str,
    input_format: str,
    num_threads: int,
    progress: _Progress,
) -> dict[str, Any]: ...
def count_files(
    tokenizer: Tokenizer,
    inputs: Sequence[_Path],
    *,
    bos: bool,
    eos: bool,
    field: str,
    lines: bool,
    errors: str,
    input_format: str,
    num_threads: int,
    progress: _Progress,
    chat: str | None = None,
    train_on: str = "assistant",
) -> dict[str, Any]: ...
def verify_shards(
    path: _Path, tokenizer: Tokenizer | None = None
) -> tuple[tuple[int, int, int, int, int] | None, list[str], int]: ...
def inspect_shards(path: _Path) -> dict[str, Any]: ...
def check_tokenizer(path: _Path, tokenizer: Tokenizer) -> None: ...
def default_threads() -> int: ...
