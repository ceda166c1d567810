"""Conversations in Mistral's instruct formats: :class:`ChatEncoding` and the argument policy of
:meth:`bpetok.Tokenizer.encode_chat`. The conversation goes to the Rust core as JSON text (what
``json.dumps`` makes of the messages), which parses, validates, normalizes and encodes it; the
rules are in ``docs/chat.md``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

from bpetok._errors import ChatError

ChatFormat = Literal["v1", "v2", "v3"]
TrainOn = Literal["assistant", "all"]

_FORMATS = ("v1", "v2", "v3")
_TRAIN_ON = ("assistant", "all")


class ChatEncoding(NamedTuple):
    """A conversation's token ids and loss mask: ``mask[i]`` is whether ``ids[i]`` is a training
    target (an assistant message's token, by default)."""

    ids: list[int]
    mask: list[bool]


def check_options(fmt: object, train_on: object) -> None:
    if fmt is not None and fmt not in _FORMATS:
        raise ValueError(f"format must be 'v1', 'v2', 'v3' or None, got {fmt!r}")
    if train_on not in _TRAIN_ON:
        raise ValueError(f"train_on must be 'assistant' or 'all', got {train_on!r}")


def conversation_json(messages: object, tools: object, where: str) -> str:
    """The JSON text of one conversation, for the core."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise TypeError(f"{where}messages must be a list of message dicts, got {type(messages).__name__}")
    try:
        return json.dumps({"messages": messages, "tools": tools}, ensure_ascii=False)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{where}the conversation is not JSON data: {err}") from None


def batch_json(conversations: Iterable[Mapping[str, Any]]) -> list[str]:
    texts = []
    for i, conv in enumerate(conversations):
        if not isinstance(conv, Mapping):
            raise TypeError(
                f"conversations[{i}] is {type(conv).__name__}, expected a dict with 'messages' "
                "(and optionally 'tools')"
            )
        if "messages" not in conv:
            raise ChatError(f"conversation {i}: it has no 'messages'", conversation=i)
        texts.append(conversation_json(conv["messages"], conv.get("tools"), f"conversation {i}: "))
    return texts


def to_utf8_safe(text: str) -> str:
    """``text`` if it has a UTF-8 form; a lone surrogate is a ChatError."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        bad = ord(text[err.start])
        raise ChatError(
            f"the conversation holds the lone surrogate U+{bad:04X}, which is not text "
            "and cannot be tokenized"
        ) from None
    return text


def run(
    core: Any, texts: list[str], fmt: str, train_on: str, threads: int, batch: bool
) -> list[ChatEncoding]:
    try:
        made = core.encode_chat(texts, fmt, train_on, threads)
    except UnicodeEncodeError:
        for text in texts:
            to_utf8_safe(text)
        raise
    except ValueError as err:
        index, message, reason = err.args
        where = f"conversation {index}: " if batch and index is not None else ""
        at = f"message {message}: " if message is not None else ""
        raise ChatError(
            f"{where}{at}{reason}", conversation=index if batch else None, message_index=message
        ) from None
    return [ChatEncoding(ids, mask) for ids, mask in made]
