"""The exceptions bpetok raises for what can go wrong with its inputs, options and outputs.

Every one derives from :class:`BpetokError`, and also from the builtin a caller already catches
(``ValueError`` or ``OSError``), so ``except ValueError`` keeps working. The native module maps
every error of the Rust core to one of these in one place (``rust/bpetok-python/src/errors.rs``),
setting :attr:`BpetokError.kind` (a stable snake_case name of what went wrong, the core's
``kind()``) and, for input errors, where.
"""

from __future__ import annotations

__all__ = [
    "BpetokError",
    "ChatError",
    "InputError",
    "ModelError",
    "OutputError",
    "PackOptionsError",
    "ShardError",
]


class BpetokError(Exception):
    """The base of every bpetok error. ``kind`` names what went wrong (for example
    ``invalid_utf8``, ``missing_field``, ``directory_in_use``); the message says it in words,
    with the file and line it is about."""

    kind: str = "error"


class ChatError(BpetokError, ValueError):
    """A conversation that the instruct format cannot encode, or that ``mistral-common`` would
    refuse: an unknown role, roles out of order, no final assistant message, a tool result
    without a call... ``message_index`` is the index of the message at fault (counted from 0)
    and ``conversation`` the conversation's index in a batch, when known."""

    kind = "bad_conversation"

    def __init__(
        self, message: str, *, conversation: int | None = None, message_index: int | None = None
    ) -> None:
        super().__init__(message)
        self.conversation = conversation
        self.message_index = message_index


class ModelError(BpetokError, ValueError):
    """The model file cannot be used: it is not a SentencePiece model, or not one bpetok
    implements (byte fallback on, identity normalizer)."""

    kind = "model"


class InputError(BpetokError, ValueError):
    """An input cannot be read as asked: a missing file, invalid UTF-8 or JSON, a record without
    the text field, a truncated ``.gz``... ``file``, ``line``, ``column`` and ``row`` (Parquet)
    say where, when known."""

    kind = "input"
    file: str | None = None
    line: int | None = None
    column: int | None = None
    row: int | None = None


class PackOptionsError(BpetokError, ValueError):
    """An option of :func:`bpetok.pack` or :func:`bpetok.encode_files` is out of bounds.
    ``option`` is its name (``seq_len``, ``pad_id``, ...)."""

    kind = "invalid_option"
    option: str | None = None


class ShardError(BpetokError, ValueError):
    """A shard directory cannot be written or read as asked: it holds another output, it is not
    a shard directory, its files are damaged, or it was packed with another tokenizer."""

    kind = "shard"


class OutputError(BpetokError, OSError):
    """An output (shards, ids, text) cannot be written: a read-only directory, a full disk.
    ``errno``, ``strerror`` and ``filename`` are set as for any ``OSError``."""

    kind = "output"
