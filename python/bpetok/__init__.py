"""bpetok: exact SentencePiece byte-fallback BPE for Mistral / Mixtral vocabularies, in Rust.

``bpetok.encode`` and ``bpetok.decode`` give the same ids and text as the ``sentencepiece``
package loaded with the Mistral 7B / Mixtral 8x7B ``tokenizer.model``, which is embedded in the
package. ``bpetok.Tokenizer.from_file`` loads any other SentencePiece BPE model with byte fallback
and the identity normalizer (for example the v3 vocabulary of Mixtral 8x22B).

``bpetok.pack`` turns corpora into sliding-window-aware training shards (read back with
``bpetok.ShardDataset``); ``encode_files`` / ``decode_files`` convert whole corpora and
``count_files`` counts their tokens; ``verify``
and ``inspect`` check and summarise shard directories. The ``bpetok`` command line is these
functions. Errors derive from :class:`BpetokError`.
"""

from typing import TYPE_CHECKING

from bpetok import _bpetok
from bpetok._chat import ChatEncoding
from bpetok._data import (
    MAX_SEQ_LEN,
    CountResult,
    DecodeResult,
    EncodeResult,
    InputCount,
    PackResult,
    Progress,
    ResumedRun,
    VerifyReport,
    count_files,
    decode_files,
    encode_files,
    inspect,
    pack,
    show_sample,
    verify,
)
from bpetok._errors import (
    BpetokError,
    ChatError,
    InputError,
    ModelError,
    OutputError,
    PackOptionsError,
    ShardError,
)
from bpetok._tokenizer import Tokenizer, count, decode, encode, encode_chat

__all__ = [
    "MAX_SEQ_LEN",
    "BpetokError",
    "ChatEncoding",
    "ChatError",
    "CountResult",
    "DecodeResult",
    "EncodeResult",
    "InputCount",
    "InputError",
    "ModelError",
    "OutputError",
    "PackOptionsError",
    "PackResult",
    "Progress",
    "ResumedRun",
    "ShardDataset",
    "ShardError",
    "Tokenizer",
    "VerifyReport",
    "__version__",
    "collate_flattened",
    "count",
    "count_files",
    "decode",
    "decode_files",
    "encode",
    "encode_chat",
    "encode_files",
    "inspect",
    "pack",
    "show_sample",
    "verify",
]

if TYPE_CHECKING:
    from bpetok.dataset import ShardDataset, collate_flattened

__version__: str = _bpetok.__version__

_LAZY = ("ShardDataset", "collate_flattened")


def __getattr__(name: str) -> object:
    # The shard reader (numpy) is imported on first use, so that `import bpetok` and the command
    # line start quickly.
    if name in _LAZY:
        from bpetok import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'bpetok' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
