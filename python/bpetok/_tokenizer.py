"""The tokenizer: :class:`Tokenizer`, and :func:`encode` / :func:`decode` with the embedded
vocabulary. Argument policy (types, defaults, thread counts) lives here; the native module does
the work with the GIL released."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bpetok import _bpetok, _chat
from bpetok._chat import ChatEncoding, ChatFormat, TrainOn
from bpetok._errors import ModelError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

Text = str | bytes


def _text_arg(text: object) -> Text:
    if isinstance(text, (str, bytes)):
        return text
    raise TypeError(f"expected str or bytes, got {type(text).__name__}")


def _surrogate_error(text: Text, err: UnicodeEncodeError) -> UnicodeEncodeError:
    """A clearer UnicodeEncodeError for a str that holds lone surrogates."""
    bad = err.object[err.start] if isinstance(err.object, str) and err.start < len(err.object) else "?"
    return UnicodeEncodeError(
        "utf-8",
        err.object if isinstance(err.object, str) else str(text),
        err.start,
        err.end,
        f"lone surrogate U+{ord(bad):04X} is not text and cannot be tokenized; "
        "fix the decoding that produced it, or pass text.encode('utf-8', 'replace')",
    )


class Tokenizer:
    """A SentencePiece BPE tokenizer that gives the same ids as ``sentencepiece``.

    Load one with :meth:`from_file` (a SentencePiece ``.model`` file) or take the embedded
    Mistral 7B / Mixtral 8x7B one with :meth:`default`. A tokenizer is immutable, safe to share
    between threads, and picklable (so it can be sent to multiprocessing, ``datasets.map``,
    Dask or Ray workers).

    Memory: a ``str`` is read as UTF-8 through a temporary copy, freed when the call returns,
    except a ``str`` of 2**20 characters or more, which is read through CPython's UTF-8 cache of
    that string: made once, it lives as long as the string does (for an ASCII string it is the
    string itself, no copy), and later calls on the same string do not copy it again.
    """

    __slots__ = ("_core", "_is_default")

    def __init__(self, _core: _bpetok.Tokenizer, _is_default: bool = False) -> None:
        """Use :meth:`from_file`, :meth:`from_bytes` or :meth:`default` to make a Tokenizer."""
        if not isinstance(_core, _bpetok.Tokenizer):
            raise TypeError(
                "use Tokenizer.from_file(path), Tokenizer.from_bytes(data) or Tokenizer.default()"
            )
        self._core = _core
        self._is_default = _is_default

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Loads a SentencePiece ``.model`` file.

        Raises ``FileNotFoundError`` / ``OSError`` if the file cannot be read, and
        :class:`ModelError` (a ``ValueError``) if it is not a SentencePiece BPE model that
        bpetok implements (byte fallback on, identity normalizer).
        """
        with open(os.fspath(path), "rb") as f:
            data = f.read()
        try:
            return cls(_bpetok.Tokenizer.from_bytes(data))
        except ModelError as err:
            raise ModelError(f"{os.fspath(path)}: {err}") from None

    @classmethod
    def from_bytes(cls, data: bytes) -> Tokenizer:
        """Loads a model from the bytes of a SentencePiece ``.model`` file."""
        return cls(_bpetok.Tokenizer.from_bytes(bytes(data)))

    @classmethod
    def default(cls) -> Tokenizer:
        """The embedded Mistral 7B / Mixtral 8x7B tokenizer (32,000 pieces), loaded once."""
        return _default_tokenizer()

    def __reduce__(self) -> tuple[Any, ...]:
        if self._is_default:
            return (_default_tokenizer, ())
        return (Tokenizer.from_bytes, (self._core.model_bytes(),))

    def __repr__(self) -> str:
        name = "mixtral-8x7b (embedded)" if self._is_default else "from file"
        return f"<bpetok.Tokenizer {name}, vocab_size={self.vocab_size()}>"

    @property
    def model_bytes(self) -> bytes:
        """The bytes of the ``.model`` file this tokenizer was loaded from."""
        return self._core.model_bytes()

    @property
    def sha256(self) -> str:
        """Lowercase hex SHA-256 of the ``.model`` file: what a shard manifest records as the
        tokenizer the shards were packed with."""
        return self._core.sha256()

    # ---- encoding -----------------------------------------------------------------------------

    def encode(self, text: Text, *, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """Encodes ``text`` to token ids, exactly as ``SentencePieceProcessor.encode`` does.

        ``text`` is a ``str`` or UTF-8 ``bytes`` (each byte that does not start a valid UTF-8
        character counts as U+FFFD, as in SentencePiece). ``add_bos`` / ``add_eos`` put ``<s>`` /
        ``</s>`` around the ids, also for empty text. A ``str`` with a lone surrogate raises
        ``UnicodeEncodeError``.
        """
        self._check_flags(add_bos, add_eos)
        try:
            return self._core.encode(_text_arg(text), add_bos, add_eos)
        except UnicodeEncodeError as err:
            raise _surrogate_error(text, err) from None

    def encode_batch(
        self,
        texts: Iterable[Text],
        *,
        add_bos: bool = False,
        add_eos: bool = False,
        num_threads: int | None = None,
    ) -> list[list[int]]:
        """Encodes many texts on several threads (the GIL released), results in input order.

        ``num_threads`` defaults to the number of CPUs this process may use. The result does not
        depend on it. With fewer texts than threads and one of 1 MiB or more, each text gets every
        thread: a long text is cut where no merge can cross and its parts are encoded in parallel
        (so ``encode_batch([huge])`` uses every core).
        """
        self._check_flags(add_bos, add_eos)
        batch = _as_text_list(texts)
        try:
            return self._core.encode_batch(batch, add_bos, add_eos, _threads(num_threads))
        except UnicodeEncodeError as err:
            raise _surrogate_error("", err) from None

    def count(self, text: Text, *, add_bos: bool = False, add_eos: bool = False) -> int:
        """The number of tokens of ``text``: ``len(self.encode(text, add_bos=..., add_eos=...))``,
        without making the ids (no list, no int objects)."""
        self._check_flags(add_bos, add_eos)
        try:
            return self._core.count(_text_arg(text), add_bos, add_eos)
        except UnicodeEncodeError as err:
            raise _surrogate_error(text, err) from None

    def count_batch(
        self,
        texts: Iterable[Text],
        *,
        add_bos: bool = False,
        add_eos: bool = False,
        num_threads: int | None = None,
    ) -> np.ndarray:
        """The token count of every text as a numpy ``int64`` array of ``len(texts)``, in input
        order: what :meth:`encode_batch` gives, as lengths, without making any list. Several
        threads, the GIL released; the counts do not depend on ``num_threads``."""
        import numpy as np

        self._check_flags(add_bos, add_eos)
        batch = _as_text_list(texts)
        try:
            data = self._core.count_batch(batch, add_bos, add_eos, _threads(num_threads))
        except UnicodeEncodeError as err:
            raise _surrogate_error("", err) from None
        return np.frombuffer(data, dtype=np.int64)

    def encode_to_numpy(self, text: Text, *, add_bos: bool = False, add_eos: bool = False) -> np.ndarray:
        """Like :meth:`encode`, as a numpy array of :attr:`dtype` (``uint16`` for 32k pieces)."""
        import numpy as np

        self._check_flags(add_bos, add_eos)
        try:
            data = self._core.encode_flat(_text_arg(text), add_bos, add_eos)
        except UnicodeEncodeError as err:
            raise _surrogate_error(text, err) from None
        return np.frombuffer(data, dtype=self.dtype)

    def encode_batch_to_numpy(
        self,
        texts: Iterable[Text],
        *,
        add_bos: bool = False,
        add_eos: bool = False,
        num_threads: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Encodes many texts into one flat array plus offsets.

        Returns ``(ids, offsets)``: ``ids`` holds all token ids back to back in :attr:`dtype`,
        ``offsets`` (``int64``, ``len(texts) + 1`` entries) says that text ``i`` is
        ``ids[offsets[i]:offsets[i + 1]]``.
        """
        import numpy as np

        self._check_flags(add_bos, add_eos)
        batch = _as_text_list(texts)
        try:
            data, offsets = self._core.encode_batch_flat(batch, add_bos, add_eos, _threads(num_threads))
        except UnicodeEncodeError as err:
            raise _surrogate_error("", err) from None
        return np.frombuffer(data, dtype=self.dtype), np.frombuffer(offsets, dtype="<i8")

    def encode_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        *,
        format: ChatFormat | None = None,
        train_on: TrainOn = "assistant",
    ) -> ChatEncoding:
        """Encodes a conversation in Mistral's instruct format, with its loss mask.

        ``messages`` are dicts as ``mistral-common`` and OpenAI write them (``role``,
        ``content``, ``tool_calls``, ``tool_call_id``, ``name``) plus an optional per-assistant
        ``weight`` (0 or 1). The ids are those of ``mistral-common``'s ``encode_chat_completion``
        in fine-tuning mode; ``mask[i]`` is True for the tokens of assistant messages (their
        content or tool calls and their ``</s>``) except those of weight 0, or for every token
        with ``train_on="all"``. ``format`` is ``"v1"`` (Mistral 7B Instruct v0.1/v0.2, Mixtral
        8x7B Instruct), ``"v2"`` or ``"v3"`` (Mixtral 8x22B, Mistral 7B v0.3); ``None`` takes
        ``"v3"`` for a vocabulary with the ``[INST]`` control piece, else ``"v1"``. A conversation
        that cannot be encoded raises :class:`ChatError` naming the message. See ``docs/chat.md``.
        """
        fmt = self._chat_format(format, train_on)
        text = _chat.conversation_json(messages, tools, "")
        return _chat.run(self._core, [text], fmt, train_on, 1, batch=False)[0]

    def encode_chat_batch(
        self,
        conversations: Iterable[Mapping[str, Any]],
        *,
        format: ChatFormat | None = None,
        train_on: TrainOn = "assistant",
        num_threads: int | None = None,
    ) -> list[ChatEncoding]:
        """:meth:`encode_chat` of many conversations (dicts with ``messages`` and optionally
        ``tools``) on several threads, results in input order. The first conversation that
        cannot be encoded raises :class:`ChatError` with its index in ``conversation``."""
        fmt = self._chat_format(format, train_on)
        texts = _chat.batch_json(conversations)
        return _chat.run(self._core, texts, fmt, train_on, _threads(num_threads), batch=True)

    def chat_format(self) -> ChatFormat:
        """The instruct format this vocabulary is for: ``"v3"`` if it has the ``[INST]`` control
        piece, else ``"v1"``."""
        fmt = self._core.chat_format()
        return "v3" if fmt == "v3" else "v1"

    def _chat_format(self, format: object, train_on: object) -> str:
        _chat.check_options(format, train_on)
        return format if isinstance(format, str) else self._core.chat_format()

    def encode_as_pieces(self, text: Text, *, add_bos: bool = False, add_eos: bool = False) -> list[str]:
        """The pieces of the encoding (byte pieces as ``<0xXX>``), as ``encode(text, out_type=str)``."""
        self._check_flags(add_bos, add_eos)
        try:
            return self._core.encode_as_pieces(_text_arg(text), add_bos, add_eos)
        except UnicodeEncodeError as err:
            raise _surrogate_error(text, err) from None

    # ---- decoding -----------------------------------------------------------------------------

    def decode(self, ids: Sequence[int] | npt.ArrayLike) -> str:
        """Decodes ids to text, exactly as ``SentencePieceProcessor.decode`` does.

        ``ids`` is a list of ints (the fastest), any sequence or iterable of ints, or a 1-d numpy
        array of integers (read as one buffer, without a Python int per id). An id outside
        ``0 .. vocab_size() - 1`` raises ``IndexError`` naming it.
        """
        if not isinstance(ids, list):
            flat = _numpy_ids(ids)
            if flat is not None:
                return self._core.decode_flat(*flat)
            ids = _as_id_list(ids)
        try:
            return self._core.decode(ids)
        except OverflowError:
            raise _id_overflow(ids, self.vocab_size()) from None

    def decode_batch(
        self, batch: Iterable[Sequence[int] | npt.ArrayLike], *, num_threads: int | None = None
    ) -> list[str]:
        """Decodes many id lists on several threads, results in input order."""
        lists = [_as_id_list(ids) for ids in batch]
        try:
            return self._core.decode_batch(lists, _threads(num_threads))
        except OverflowError:
            raise _id_overflow([i for ids in lists for i in ids], self.vocab_size()) from None

    # ---- vocabulary ---------------------------------------------------------------------------

    def id_to_piece(self, id: int) -> str:
        """The text of piece ``id`` (``IndexError`` if out of range)."""
        try:
            return self._core.id_to_piece(id)
        except OverflowError:
            raise _id_overflow([id], self.vocab_size()) from None

    def piece_to_id(self, piece: str) -> int:
        """The id of ``piece``, or :meth:`unk_id` if the vocabulary has no such piece."""
        return self._core.piece_to_id(piece)

    def vocab_size(self) -> int:
        """Number of pieces in the vocabulary."""
        return self._core.vocab_size()

    def bos_id(self) -> int:
        """The id of ``<s>``, or -1 if the model has none."""
        return self._core.bos_id()

    def eos_id(self) -> int:
        """The id of ``</s>``, or -1 if the model has none."""
        return self._core.eos_id()

    def unk_id(self) -> int:
        """The id of ``<unk>``."""
        return self._core.unk_id()

    def pad_id(self) -> int:
        """The id of ``<pad>``, or -1 if the model has none (the Mistral models have none)."""
        return self._core.pad_id()

    def __len__(self) -> int:
        return self._core.vocab_size()

    @property
    def dtype(self) -> np.dtype[Any]:
        """The smallest unsigned numpy dtype that holds every id: ``uint16`` up to 65,536 pieces."""
        import numpy as np

        return np.dtype(self._core.token_dtype())

    def _check_flags(self, add_bos: bool, add_eos: bool) -> None:
        if add_bos and self._core.bos_id() < 0:
            raise ValueError("add_bos=True but the model has no <s> control piece")
        if add_eos and self._core.eos_id() < 0:
            raise ValueError("add_eos=True but the model has no </s> control piece")


def _threads(num_threads: int | None) -> int:
    if num_threads is None:
        return _bpetok.default_threads()
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be a positive int or None, got {num_threads!r}")
    return num_threads


def _as_text_list(texts: Iterable[Text]) -> list[Text]:
    """The batch as a list (a list as it is). Its items are checked by the native module as it
    reads them: one that is neither ``str`` nor ``bytes`` raises ``TypeError: texts[i] is T,
    expected str or bytes``, for the first such item."""
    if isinstance(texts, (str, bytes)):
        raise TypeError("encode_batch takes an iterable of texts, not a single str or bytes; use encode")
    return texts if isinstance(texts, list) else list(texts)


def _as_id_list(ids: object) -> list[int]:
    if isinstance(ids, list):
        return ids
    tolist = getattr(ids, "tolist", None)  # numpy arrays and scalars, torch tensors
    if callable(tolist):
        converted = tolist()
        return converted if isinstance(converted, list) else [converted]
    if isinstance(ids, (str, bytes)):
        raise TypeError("decode takes a sequence of ids, not text")
    if not isinstance(ids, Iterable):
        raise TypeError(f"decode takes a sequence of ids, got {type(ids).__name__}")
    return list(ids)


def _numpy_ids(ids: object) -> tuple[bytes, int] | None:
    """A 1-d numpy array of integers as little-endian bytes and their size (2 and 4: unsigned,
    8: signed), which the native module reads as one buffer; None for anything else (and for
    uint64, whose values past 2^63 would not survive as int64: those go through Python ints)."""
    dtype = getattr(ids, "dtype", None)
    kind = getattr(dtype, "kind", None)
    if kind not in ("i", "u") or getattr(ids, "ndim", None) != 1:
        return None
    itemsize: int = dtype.itemsize  # type: ignore[union-attr]
    array: Any = ids
    if kind == "u" and itemsize <= 2:
        return array.astype("<u2", copy=False).tobytes(), 2
    if kind == "u" and itemsize <= 4:
        return array.astype("<u4", copy=False).tobytes(), 4
    if kind == "u":
        return None
    return array.astype("<i8", copy=False).tobytes(), 8


def _id_overflow(ids: list[int], vocab_size: int) -> IndexError:
    """The IndexError for an id too large even for a 64-bit integer."""
    bad = next((i for i in ids if not -(2**63) <= i < 2**63), None)
    return IndexError(
        f"token id {bad} is out of range: the vocabulary has {vocab_size} pieces (ids 0 to {vocab_size - 1})"
    )


_DEFAULT: Tokenizer | None = None
_DEFAULT_LOCK = threading.Lock()


def _new_default_lock() -> None:
    # A child forked while another thread held the lock (loading the default tokenizer) would
    # wait for it forever: that thread does not exist in the child.
    global _DEFAULT_LOCK
    _DEFAULT_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_default_lock)


def _default_tokenizer() -> Tokenizer:
    global _DEFAULT
    if _DEFAULT is None:
        with _DEFAULT_LOCK:
            if _DEFAULT is None:
                _DEFAULT = Tokenizer(_bpetok.Tokenizer.mixtral_8x7b(), _is_default=True)
    return _DEFAULT


def encode(text: Text, *, add_bos: bool = False, add_eos: bool = False) -> list[int]:
    """Encodes ``text`` with the embedded Mistral 7B / Mixtral 8x7B vocabulary.

    The same ids as ``sentencepiece.SentencePieceProcessor(model_file=...).encode(text)`` with
    that model. See :meth:`Tokenizer.encode`.
    """
    return _default_tokenizer().encode(text, add_bos=add_bos, add_eos=add_eos)


def count(text: Text, *, add_bos: bool = False, add_eos: bool = False) -> int:
    """The number of tokens of ``text`` with the embedded Mistral 7B / Mixtral 8x7B vocabulary:
    ``len(encode(text))`` without making the ids. See :meth:`Tokenizer.count`."""
    return _default_tokenizer().count(text, add_bos=add_bos, add_eos=add_eos)


def encode_chat(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    *,
    format: ChatFormat | None = None,
    train_on: TrainOn = "assistant",
) -> ChatEncoding:
    """Encodes a conversation with the embedded Mixtral 8x7B vocabulary (format ``"v1"`` by
    default). See :meth:`Tokenizer.encode_chat`."""
    return _default_tokenizer().encode_chat(messages, tools, format=format, train_on=train_on)


def decode(ids: Sequence[int] | npt.ArrayLike) -> str:
    """Decodes ids with the embedded Mistral 7B / Mixtral 8x7B vocabulary. See :meth:`Tokenizer.decode`."""
    return _default_tokenizer().decode(ids)
