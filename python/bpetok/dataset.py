"""Reading packed shard directories (``bpetok pack`` output) in a training loop.

:class:`ShardDataset` is a map-style dataset over a directory in the format of
``docs/shard-format.md``; :func:`collate_flattened` turns a list of its samples into one
padding-free row for FlashAttention's varlen kernels and transformers' padding-free path.

Only numpy is needed. torch is optional: ``ShardDataset`` works as a ``torch.utils.data.Dataset``
(it has ``__len__`` and ``__getitem__``, and is picklable and fork-safe, so it can be used in
``DataLoader`` workers), and ``collate_flattened(..., return_tensors="pt")`` returns tensors::

    ds = bpetok.ShardDataset("out/")
    loader = torch.utils.data.DataLoader(
        ds, batch_size=8, shuffle=True, num_workers=4,
        collate_fn=functools.partial(bpetok.collate_flattened, return_tensors="pt"),
    )
    for batch in loader:
        loss = model(**batch).loss  # a transformers model with attn_implementation="flash_attention_2"

Use ``collate_flattened`` (or your own collate function), not torch's default one: ``cu_seqlens``,
``doc_ids`` and ``doc_starts`` differ in length from sample to sample, so they cannot be stacked.

Outputs of conversations (``bpetok pack --chat``) also hold a loss mask per shard
(``shard-NNNNN.loss_mask.npy``): their samples gain ``loss_mask`` and their ``labels`` keep only
the targets the mask allows (by default the tokens of assistant messages).
"""

from __future__ import annotations

import bisect
import hashlib
import importlib
import itertools
import json
import operator
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from bpetok import _bpetok
from bpetok._errors import ShardError

if TYPE_CHECKING:  # numpy is imported on first use, so `import bpetok` stays quick
    import numpy as np
    import numpy.typing as npt

__all__ = ["FlattenedBatch", "Sample", "ShardDataset", "ShardFormatError", "collate_flattened"]

FORMAT: str = _bpetok.SHARD_FORMAT
FORMAT_VERSION: int = _bpetok.SHARD_FORMAT_VERSION
MANIFEST: str = _bpetok.MANIFEST_FILE
IGNORE_INDEX = -100
"""The label of a position that is not a target (PyTorch's ``CrossEntropyLoss`` default)."""

_TOKEN_DTYPES = {"uint16": "<u2", "uint32": "<u4"}  # manifest token_dtype -> .npy dtype
_SEGMENT_COLUMNS = 5  # start, length, context, doc_id, doc_start
_FILE_KINDS = ("tokens", "segments", "sample_index")
_LOSS_MASK = "loss_mask"  # the optional 4th file of a shard (outputs of conversations)
_LOSS_MASK_DTYPE = "|b1"  # numpy bool, one byte per token


class ShardFormatError(ShardError):
    """A shard directory does not follow ``docs/shard-format.md`` (the message names the file)."""

    kind = "shard_format"


class _SampleArrays(TypedDict):
    input_ids: npt.NDArray[np.int64]
    labels: npt.NDArray[np.int64]
    position_ids: npt.NDArray[np.int64]
    cu_seqlens: npt.NDArray[np.int32]
    doc_ids: npt.NDArray[np.int64]
    doc_starts: npt.NDArray[np.int64]


class Sample(_SampleArrays, total=False):
    """One sample of a :class:`ShardDataset`: L tokens and their segments (see ``docs/packing.md``).

    ``loss_mask`` is present only for outputs that have one (``bpetok pack --chat``)."""

    loss_mask: npt.NDArray[np.bool_]


class FlattenedBatch(TypedDict):
    """What :func:`collate_flattened` returns: numpy arrays, or torch tensors with ``return_tensors="pt"``."""

    input_ids: Any
    labels: Any
    position_ids: Any
    cu_seq_lens_q: Any
    cu_seq_lens_k: Any
    max_length_q: int
    max_length_k: int


@dataclass(frozen=True)
class _ShardInfo:
    """What the manifest says about one shard: small, so it is pickled with the dataset."""

    name: str
    samples: int
    segments: int
    paths: tuple[str, ...]  # tokens, segments, sample_index, then loss_mask if listed; absolute
    sizes: tuple[int, ...]

    @property
    def has_loss_mask(self) -> bool:
        return len(self.paths) > len(_FILE_KINDS)


@dataclass
class _Opened:
    tokens: npt.NDArray[Any]
    segments: npt.NDArray[np.int64]
    sample_index: npt.NDArray[np.int64]
    loss_mask: npt.NDArray[np.bool_] | None


class _ProcessState:
    """Memory maps opened by one process. Replaced as a whole on the first access after a fork."""

    __slots__ = ("lock", "opened", "pid")

    def __init__(self, pid: int, num_shards: int) -> None:
        self.pid = pid
        self.lock = threading.Lock()
        self.opened: list[_Opened | None] = [None] * num_shards


class ShardDataset:
    """A map-style dataset over a directory written by ``bpetok pack`` (``docs/shard-format.md``).

    ``ShardDataset(path)`` reads ``manifest.json`` and checks that every shard file it lists exists
    with the listed size (it does not hash them: ``bpetok verify`` does that). Only listed shards
    are part of the dataset. The ``.npy`` files are memory-mapped lazily, on the first access to a
    shard in each process, so the dataset is cheap to pickle (only the path and a little metadata
    travel) and safe to use in torch ``DataLoader`` workers, after ``os.fork`` and from several
    threads at once.

    ``ds[i]`` (``0 <= i < len(ds)``, or negative from the end) returns a :class:`Sample`, a dict
    of fresh numpy arrays (writable, not views of the files) for a sample of ``L = seq_len``
    tokens made of ``G`` segments:

    - ``input_ids`` (``L``, ``int64``): the tokens. Widened from the on-disk ``uint16`` /
      ``uint32`` because ``int64`` is what models take (``torch.long`` for embedding lookups and
      cross-entropy targets), and so that it matches ``labels``.
    - ``labels`` (``L``, ``int64``): ``input_ids`` at target positions and ``-100`` elsewhere
      (Hugging Face convention: the model shifts labels internally). The targets of a document
      segment are positions ``start + max(1, context)`` to ``start + length - 1``; padding has none.
    - ``position_ids`` (``L``, ``int64``): ``0 .. length - 1`` for every segment, including
      continuation chunks and padding.
    - ``cu_seqlens`` (``G + 1``, ``int32``): ``0``, the end of each segment, ..., ``L``.
    - ``doc_ids`` (``G``, ``int64``): each segment's source record (counted from 0 over all inputs
      in order), ``-1`` for padding.
    - ``doc_starts`` (``G``, ``int64``): offset of each segment's first token in its document's
      token list (``0`` for padding).
    - ``loss_mask`` (``L``, ``bool``), only for outputs with a loss mask (conversations packed
      with ``bpetok pack --chat``, see :attr:`has_loss_mask`): whether each token may be a target
      (with the default ``train_on="assistant"``, the tokens of assistant messages); ``False`` on
      padding. ``labels`` then hold a token only if it is a target by the segment rule above AND
      its ``loss_mask`` is ``True``. Outputs of plain text have no such key and no such file.

    Attention must not cross a segment boundary; with a sliding window ``W = window > 0`` pass
    FlashAttention ``window_size=(W - 1, 0)``. Raises ``FileNotFoundError`` if the manifest or a
    listed file is missing and :class:`ShardFormatError` (a ``ValueError``) if one is not in the
    documented format, always naming the file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = os.path.abspath(os.fspath(path))
        manifest, digest = _read_manifest(self._path)
        self._init_from(manifest, digest)
        for shard in self._shards:
            _check_sizes(shard, self._manifest_path)

    def _init_from(self, manifest: dict[str, Any], digest: str) -> None:
        where = self._manifest_path
        options = _field(manifest, "options", dict, where)
        seq_len = _field(options, "seq_len", int, where, "options.")
        if seq_len < 2:
            raise ShardFormatError(f"{where}: options.seq_len is {seq_len}, expected at least 2")
        window = _field(options, "window", int, where, "options.")
        if window < 0:
            raise ShardFormatError(f"{where}: options.window is {window}, expected 0 (none) or more")
        dtype_name = _field(manifest, "token_dtype", str, where)
        if dtype_name not in _TOKEN_DTYPES:
            raise ShardFormatError(f"{where}: token_dtype {dtype_name!r} is not 'uint16' or 'uint32'")
        shards = _field(manifest, "shards", list, where)
        chat = options.get("chat")
        if chat is not None and not isinstance(chat, dict):
            raise ShardFormatError(f"{where}: options.chat should be dict, got {type(chat).__name__}")
        self._manifest: dict[str, Any] | None = manifest
        self._digest: str = digest
        self._seq_len: int = seq_len
        self._window: int = window
        self._token_dtype: str = _TOKEN_DTYPES[dtype_name]
        self._shards = tuple(_shard_info(s, k, self._path, where) for k, s in enumerate(shards))
        with_mask = [s.has_loss_mask for s in self._shards]
        if any(with_mask) and not all(with_mask):
            raise ShardFormatError(
                f"{where}: shards[{with_mask.index(True)}] lists files.{_LOSS_MASK} and "
                f"shards[{with_mask.index(False)}] does not; every shard of an output has one or none"
            )
        if chat is not None and self._shards and not with_mask[0]:
            raise ShardFormatError(
                f"{where}: options.chat is set (an output of conversations), but shards[0] lists no "
                f"files.{_LOSS_MASK}; without it the labels would include every token"
            )
        self._chat: dict[str, Any] | None = dict(chat) if chat is not None else None
        # An output of conversations with no samples still counts as one with a loss mask.
        self._has_loss_mask: bool = with_mask[0] if self._shards else chat is not None
        self._count()
        self._state: _ProcessState | None = None

    def _count(self) -> None:
        # ends[k] is one past the last global index of shard k.
        self._ends = list(itertools.accumulate(s.samples for s in self._shards))
        self._len = self._ends[-1] if self._ends else 0

    # ---- metadata -----------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The shard directory (absolute)."""
        return self._path

    @property
    def _manifest_path(self) -> str:
        return os.path.join(self._path, MANIFEST)

    @property
    def manifest(self) -> dict[str, Any]:
        """The parsed ``manifest.json`` (read again after unpickling, and checked to be unchanged)."""
        if self._manifest is None:
            manifest, digest = _read_manifest(self._path)
            if digest != self._digest:
                raise ShardFormatError(
                    f"{self._manifest_path} changed since this dataset was opened (the directory was "
                    "rewritten); open it again"
                )
            self._manifest = manifest
        return self._manifest

    @property
    def seq_len(self) -> int:
        """Tokens per sample, ``L``."""
        return self._seq_len

    @property
    def window(self) -> int:
        """The sliding window ``W`` the shards were packed for (``0``: full causal attention).

        For FlashAttention pass ``window_size=(W - 1, 0)`` when ``W > 0``.
        """
        return self._window

    @property
    def has_loss_mask(self) -> bool:
        """Whether the samples have a ``loss_mask`` (outputs of ``bpetok pack --chat``) that
        ``labels`` apply; ``False`` for outputs of plain text."""
        return self._has_loss_mask

    @property
    def chat(self) -> dict[str, Any] | None:
        """The manifest's ``options.chat`` (``{"format": "v3", "train_on": "assistant"}``) for an
        output of conversations, else ``None``."""
        return dict(self._chat) if self._chat is not None else None

    @property
    def num_shards(self) -> int:
        """Shards listed in the manifest."""
        return len(self._shards)

    @property
    def token_dtype(self) -> np.dtype[Any]:
        """The on-disk dtype of the tokens (``uint16`` or ``uint32``, little-endian)."""
        import numpy as np

        return np.dtype(self._token_dtype)

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        mask = ", loss_mask" if self._has_loss_mask else ""
        return (
            f"<bpetok.ShardDataset {self._path!r}: {self._len} samples of {self._seq_len} tokens "
            f"in {len(self._shards)} shards, window={self._window}{mask}>"
        )

    # ---- pickling: only the path and small metadata -------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        return {
            "path": self._path,
            "digest": self._digest,
            "seq_len": self._seq_len,
            "window": self._window,
            "token_dtype": self._token_dtype,
            "shards": self._shards,
            "chat": self._chat,
            "has_loss_mask": self._has_loss_mask,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._path = state["path"]
        self._digest = state["digest"]
        self._seq_len = state["seq_len"]
        self._window = state["window"]
        self._token_dtype = state["token_dtype"]
        self._shards = state["shards"]
        self._chat = state["chat"]
        self._has_loss_mask = state["has_loss_mask"]
        self._count()
        self._manifest = None
        self._state = None

    # ---- reading ------------------------------------------------------------------------------

    def _opened(self, k: int) -> _Opened:
        pid = os.getpid()
        state = self._state
        if state is None or state.pid != pid:
            # First access in this process, or in a child after fork: do not use the parent's
            # maps, and not its lock either (another parent thread may have held it at the fork).
            # Racing threads may each build a state; the last one wins and the others' maps are
            # simply dropped, so results stay correct.
            state = _ProcessState(pid, len(self._shards))
            self._state = state
        opened = state.opened[k]
        if opened is None:
            with state.lock:
                opened = state.opened[k]
                if opened is None:
                    opened = self._open_shard(self._shards[k])
                    state.opened[k] = opened
        return opened

    def _open_shard(self, shard: _ShardInfo) -> _Opened:
        _check_sizes(shard, self._manifest_path)
        tokens_path, segments_path, index_path = shard.paths[:3]
        tokens = _load(tokens_path, self._token_dtype, (shard.samples, self._seq_len))
        segments = _load(segments_path, "<i8", (shard.segments, _SEGMENT_COLUMNS))
        sample_index = _load(index_path, "<i8", (shard.samples + 1,))
        if sample_index[0] != 0 or sample_index[-1] != shard.segments:
            raise ShardFormatError(
                f"{index_path}: must run from 0 to {shard.segments} (the segment count), "
                f"runs from {int(sample_index[0])} to {int(sample_index[-1])}"
            )
        loss_mask = None
        if shard.has_loss_mask:
            loss_mask = _load(shard.paths[3], _LOSS_MASK_DTYPE, (shard.samples, self._seq_len))
        return _Opened(tokens, segments, sample_index, loss_mask)

    def __getitem__(self, index: int) -> Sample:
        try:
            i = operator.index(index)
        except TypeError:
            raise TypeError(f"ShardDataset indices must be integers, not {type(index).__name__}") from None
        n = self._len
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"sample index {index} is out of range for a dataset of {n} samples")
        k = bisect.bisect_right(self._ends, i)
        local = i - (self._ends[k - 1] if k else 0)
        return self._sample(k, local)

    def _sample(self, k: int, local: int) -> Sample:
        import numpy as np

        shard = self._opened(k)
        L = self._seq_len
        first, last = int(shard.sample_index[local]), int(shard.sample_index[local + 1])
        segs = np.array(shard.segments[first:last], dtype=np.int64)  # a copy: G rows, small
        input_ids = np.array(shard.tokens[local], dtype=np.int64)
        starts, lengths, context = segs[:, 0], segs[:, 1], segs[:, 2]
        doc_ids, doc_starts = segs[:, 3].copy(), segs[:, 4].copy()

        cu = np.zeros(len(segs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=cu[1:])
        if len(segs) == 0 or cu[-1] != L or np.any(lengths < 1) or np.any(starts != cu[:-1]):
            raise ShardFormatError(
                f"{self._shards[k].paths[1]}: the segments of sample {local} (rows {first} to "
                f"{last - 1}) do not tile [0, {L}) in order"
            )
        # Offset of every token within its segment, without a Python loop over tokens.
        position_ids = np.arange(L, dtype=np.int64) - np.repeat(starts, lengths)
        first_target = np.repeat(np.where(doc_ids >= 0, np.maximum(context, 1), L), lengths)
        target = position_ids >= first_target
        loss_mask = None
        if shard.loss_mask is not None:
            loss_mask = np.array(shard.loss_mask[local], dtype=np.bool_)  # a copy, like the rest
            target &= loss_mask
        labels = np.where(target, input_ids, IGNORE_INDEX)
        sample: Sample = {
            "input_ids": input_ids,
            "labels": labels,
            "position_ids": position_ids,
            "cu_seqlens": cu.astype(np.int32),
            "doc_ids": doc_ids,
            "doc_starts": doc_starts,
        }
        if loss_mask is not None:
            sample["loss_mask"] = loss_mask
        return sample


def collate_flattened(
    samples: Sequence[Mapping[str, Any]],
    *,
    return_tensors: str = "np",
    drop_padding: bool = False,
) -> FlattenedBatch:
    """Concatenates samples into ONE row for padding-free training (FlashAttention varlen).

    Returns ``input_ids``, ``labels`` and ``position_ids`` of shape ``(1, N)`` (``int64``),
    ``cu_seq_lens_q`` and ``cu_seq_lens_k`` (the same ``int32`` array of shape ``(S + 1,)``: 0,
    the end of every segment of every sample in order, ..., N) and ``max_length_q`` /
    ``max_length_k`` (Python ``int``: the longest segment). These are the keyword names and dtypes
    of transformers' ``DataCollatorWithFlattening(return_flash_attn_kwargs=True)`` and of the
    ``FlashAttentionKwargs`` that its models pass to ``_flash_attention_forward``, so the batch can
    be given to such a model as ``model(**batch)``. ``position_ids`` restart at 0 at every segment,
    so a model that finds boundaries from ``position_ids`` alone sees the same ones.

    Padding: by default each sample's padding stays in the row as a segment of its own in
    ``cu_seq_lens``, so no real token attends to it, and its labels are ``-100``; N is then
    ``len(samples) * L``. With ``drop_padding=True`` padding segments (``doc_ids == -1``, so the
    samples need ``doc_ids``) are removed, which saves their compute; N then varies per batch.

    ``samples`` are dicts as :class:`ShardDataset` returns (``input_ids``, ``labels``,
    ``position_ids``, ``cu_seqlens``; other keys are ignored). The ``labels`` of samples with a
    ``loss_mask`` already apply it, so the batch has no ``loss_mask`` of its own (a model called
    as ``model(**batch)`` would refuse one). ``return_tensors="np"`` (the
    default) gives numpy arrays, ``"pt"`` torch tensors (torch is imported only then).
    """
    # Names, shapes and dtypes checked against transformers' DataCollatorWithFlattening
    # (src/transformers/data/data_collator.py: input_ids/labels/position_ids int64 with a batch
    # dimension of 1, cu_seq_lens_q/k int32, max_length_q/k Python ints) and the
    # FlashAttentionKwargs / _flash_attention_forward(..., cu_seq_lens_q, cu_seq_lens_k,
    # max_length_q, max_length_k) parameters in src/transformers/modeling_flash_attention_utils.py.
    import numpy as np

    if return_tensors not in ("np", "pt"):
        raise ValueError(f"return_tensors must be 'np' or 'pt', got {return_tensors!r}")
    if len(samples) == 0:
        raise ValueError("collate_flattened needs at least one sample")
    ids_parts: list[npt.NDArray[np.int64]] = []
    label_parts: list[npt.NDArray[np.int64]] = []
    position_parts: list[npt.NDArray[np.int64]] = []
    bounds: list[npt.NDArray[np.int64]] = [np.zeros(1, dtype=np.int64)]
    offset = 0
    for n, sample in enumerate(samples):
        ids = np.asarray(sample["input_ids"], dtype=np.int64).reshape(-1)
        labels = np.asarray(sample["labels"], dtype=np.int64).reshape(-1)
        positions = np.asarray(sample["position_ids"], dtype=np.int64).reshape(-1)
        cu = np.asarray(sample["cu_seqlens"], dtype=np.int64).reshape(-1)
        length = len(ids)
        if len(labels) != length or len(positions) != length or len(cu) < 2 or cu[0] != 0 or cu[-1] != length:
            raise ValueError(
                f"samples[{n}]: input_ids, labels and position_ids must have the same length and "
                "cu_seqlens must run from 0 to it"
            )
        if drop_padding:
            if "doc_ids" not in sample:
                raise ValueError(f"samples[{n}] has no doc_ids, which drop_padding=True needs")
            keep_segments = np.asarray(sample["doc_ids"]).reshape(-1) >= 0
            if len(keep_segments) != len(cu) - 1:
                raise ValueError(f"samples[{n}]: doc_ids must have one entry per segment")
            seg_lengths = np.diff(cu)
            keep = np.repeat(keep_segments, seg_lengths)
            ids, labels, positions = ids[keep], labels[keep], positions[keep]
            kept = seg_lengths[keep_segments]
            cu = np.zeros(len(kept) + 1, dtype=np.int64)
            np.cumsum(kept, out=cu[1:])
        ids_parts.append(ids)
        label_parts.append(labels)
        position_parts.append(positions)
        bounds.append(cu[1:] + offset)
        offset += int(cu[-1])
    cu_seq_lens = np.concatenate(bounds)
    if offset > np.iinfo(np.int32).max:
        raise ValueError(f"{offset} tokens in one row do not fit the int32 cu_seq_lens")
    cu32 = cu_seq_lens.astype(np.int32)
    max_length = int(np.diff(cu_seq_lens).max()) if len(cu_seq_lens) > 1 else 0
    arrays: dict[str, Any] = {
        "input_ids": np.concatenate(ids_parts)[None, :],
        "labels": np.concatenate(label_parts)[None, :],
        "position_ids": np.concatenate(position_parts)[None, :],
        "cu_seq_lens_q": cu32,
        "cu_seq_lens_k": cu32.copy(),
    }
    if return_tensors == "pt":
        torch = _import_torch()
        arrays = {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in arrays.items()}
    return {
        "input_ids": arrays["input_ids"],
        "labels": arrays["labels"],
        "position_ids": arrays["position_ids"],
        "cu_seq_lens_q": arrays["cu_seq_lens_q"],
        "cu_seq_lens_k": arrays["cu_seq_lens_k"],
        "max_length_q": max_length,
        "max_length_k": max_length,
    }


# ---- helpers ----------------------------------------------------------------------------------


def _import_torch() -> Any:
    try:
        return importlib.import_module("torch")
    except ImportError as err:
        raise ImportError(
            "return_tensors='pt' needs PyTorch, which is not installed; install torch, or use the "
            "default return_tensors='np' and convert with torch.from_numpy"
        ) from err


def _read_manifest(directory: str) -> tuple[dict[str, Any], str]:
    where = os.path.join(directory, MANIFEST)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory}: no such directory (expected a bpetok shard directory)")
    try:
        with open(where, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{where}: not found; {directory} is not a bpetok shard directory, or its pack did not "
            "finish (manifest.json is written last)"
        ) from None
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ShardFormatError(f"{where}: not valid UTF-8 JSON: {err}") from None
    if not isinstance(manifest, dict):
        raise ShardFormatError(f"{where}: expected a JSON object, got {type(manifest).__name__}")
    fmt = manifest.get("format")
    if fmt != FORMAT:
        raise ShardFormatError(f"{where}: format is {fmt!r}, expected {FORMAT!r}")
    version = manifest.get("format_version")
    if isinstance(version, bool) or version != FORMAT_VERSION:
        raise ShardFormatError(
            f"{where}: format_version {version!r} is not supported; this bpetok reads version "
            f"{FORMAT_VERSION}"
        )
    return manifest, hashlib.sha256(data).hexdigest()


def _field(obj: Mapping[str, Any], key: str, kind: type, where: str, prefix: str = "") -> Any:
    if key not in obj:
        raise ShardFormatError(f"{where}: {prefix}{key} is missing")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ShardFormatError(
            f"{where}: {prefix}{key} should be {kind.__name__}, got {type(value).__name__}"
        )
    return value


def _shard_info(entry: Any, k: int, directory: str, where: str) -> _ShardInfo:
    prefix = f"shards[{k}]."
    if not isinstance(entry, dict):
        raise ShardFormatError(f"{where}: shards[{k}] should be an object")
    name = _field(entry, "name", str, where, prefix)
    samples = _field(entry, "samples", int, where, prefix)
    segments = _field(entry, "segments", int, where, prefix)
    if samples < 0 or segments < 0:
        raise ShardFormatError(f"{where}: {prefix}samples and segments must not be negative")
    files = _field(entry, "files", dict, where, prefix)
    paths: list[str] = []
    sizes: list[int] = []
    kinds = (*_FILE_KINDS, _LOSS_MASK) if _LOSS_MASK in files else _FILE_KINDS
    for kind in kinds:
        file_entry = _field(files, kind, dict, where, f"{prefix}files.")
        rel = _field(file_entry, "path", str, where, f"{prefix}files.{kind}.")
        size = _field(file_entry, "size", int, where, f"{prefix}files.{kind}.")
        norm = os.path.normpath(rel)
        if os.path.isabs(rel) or norm == ".." or norm.startswith(".." + os.sep):
            raise ShardFormatError(f"{where}: {prefix}files.{kind}.path {rel!r} is not inside the directory")
        paths.append(os.path.join(directory, norm))
        sizes.append(size)
    return _ShardInfo(name, samples, segments, tuple(paths), tuple(sizes))


def _check_sizes(shard: _ShardInfo, where: str) -> None:
    for path, size in zip(shard.paths, shard.sizes, strict=True):
        try:
            actual = os.stat(path).st_size
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: listed in {where} (shard {shard.name}) but missing") from None
        if actual != size:
            raise ShardFormatError(
                f"{path}: {actual} bytes, but {where} lists {size}: the file is truncated or was "
                "replaced (`bpetok verify` checks every file)"
            )


def _load(path: str, dtype_str: str, shape: tuple[int, ...]) -> Any:
    import numpy as np

    dtype = np.dtype(dtype_str)
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing") from None
    except ValueError as err:
        raise ShardFormatError(f"{path}: not a readable .npy file: {err}") from None
    if array.dtype != dtype or array.shape != shape:
        raise ShardFormatError(
            f"{path}: holds {array.dtype.str} {list(array.shape)}, expected {dtype.str} {list(shape)}"
        )
    return array
