"""The reference for chat encoding: mistral-common's ``encode_chat_completion``, with a per-token loss mask.

``reference(conversation, fmt)`` gives the ids ``MistralTokenizer.encode_chat_completion`` gives for a
conversation in finetuning mode, and a mask that marks the tokens of the assistant messages (after
mistral-common's normalization) as targets, unless that message's weight is 0.

mistral-common has no mask, so the mask is made by walking the normalized request the way
``InstructTokenizerBase.encode_instruct`` does, one message at a time, with exactly the arguments it passes,
and the concatenation is checked against ``encode_chat_completion``'s ids: if mistral-common changes how it
encodes a request, the reference fails loudly instead of drifting.

The normalizer drops the weights (it builds plain ``AssistantMessage`` objects), but it never merges
messages of different roles or weights, so the weight of every normalized message is found by grouping the
original messages the same way (``_aggregate_messages``): consecutive messages of the same role and weight
form a group; a system group gives no message, a tool group one per message, a user or assistant group one;
an empty user message is put first when the first message left is not a user message.

Conversations are plain dicts, as bpetok takes them: ``{"messages": [...], "tools": [...]}`` (tools optional).
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mistral_common
from mistral_common.protocol.instruct.messages import (
    AssistantMessage,
    FinetuningAssistantMessage,
    SystemMessage,
    ToolMessage,
    UserMessage,
)
from mistral_common.protocol.instruct.request import ChatCompletionRequest
from mistral_common.protocol.instruct.tool_calls import Tool
from mistral_common.protocol.instruct.validator import ValidationMode
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

FORMATS = ("v1", "v2", "v3")
SHARED_VOCAB = Path(__file__).resolve().parents[1].parent / "shared" / "vocab"
MC_DATA = Path(mistral_common.__file__).resolve().parent / "data"

# The vocabulary each format is tested with, and the name mistral-common must see to pick the version.
VOCAB_FILES = {
    "v1": SHARED_VOCAB / "mixtral-8x7b-v0.1.model",
    "v2": MC_DATA / "mistral_instruct_tokenizer_240216.model.v2",
    "v3": SHARED_VOCAB / "mistral-v3.model",
}
_VERSIONED_NAMES = {"v1": "mixtral-8x7b.model.v1", "v2": "mistral-v2.model.v2", "v3": "mistral-v3.model.v3"}


def missing_vocab_files() -> list[Path]:
    """The vocabulary files that are not there (the tests skip when this is not empty)."""
    return [path for path in VOCAB_FILES.values() if not path.is_file()]


@functools.cache
def _versioned_dir() -> Path:
    """A temporary directory with each vocabulary under a file name that tells mistral-common its version."""
    tmp = Path(tempfile.mkdtemp(prefix="bpetok-chat-ref-"))
    weakref.finalize(_versioned_dir, shutil.rmtree, tmp, ignore_errors=True)
    for fmt, path in VOCAB_FILES.items():
        target = tmp / _VERSIONED_NAMES[fmt]
        try:
            target.symlink_to(path)
        except OSError:  # no symlinks here: a copy does as well
            shutil.copyfile(path, target)
    return tmp


@functools.cache
def mistral_tokenizer(fmt: str) -> MistralTokenizer:
    """mistral-common's tokenizer for ``fmt`` ("v1", "v2" or "v3"), in finetuning mode, loaded once."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    tok = MistralTokenizer.from_file(
        str(_versioned_dir() / _VERSIONED_NAMES[fmt]), mode=ValidationMode.finetuning
    )
    assert tok.instruct_tokenizer.tokenizer.version.value == fmt, tok.instruct_tokenizer.tokenizer.version
    return tok


# ---- dicts to mistral-common objects -----------------------------------------------------------------------


class UnknownRole(ValueError):
    """A message whose role mistral-common has no class for."""


def to_message(message: dict[str, Any]) -> Any:
    """The mistral-common message for one dict, chosen by its role (pydantic validates the rest).

    An assistant message with a "weight" key is a ``FinetuningAssistantMessage``, as in mistral-finetune.
    """
    if not isinstance(message, dict):
        raise UnknownRole(f"a message must be a dict, not {type(message).__name__}")
    role = message.get("role")
    if role == "user":
        return UserMessage.model_validate(message)
    if role == "system":
        return SystemMessage.model_validate(message)
    if role == "tool":
        return ToolMessage.model_validate(message)
    if role == "assistant":
        cls = FinetuningAssistantMessage if "weight" in message else AssistantMessage
        return cls.model_validate(message)
    raise UnknownRole(f"unknown role {role!r}")


def chat_request(conversation: dict[str, Any]) -> ChatCompletionRequest:
    """The ``ChatCompletionRequest`` of a conversation dict."""
    tools = conversation.get("tools")
    return ChatCompletionRequest(
        messages=[to_message(m) for m in conversation["messages"]],
        tools=None if tools is None else [Tool.model_validate(t) for t in tools],
    )


# ---- the reference -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """The ids and mask of one conversation, with the token span of every normalized message."""

    ids: list[int]
    mask: list[bool]
    # (role, start, end, is_target) per normalized message, in order; BOS is ids[0], before them.
    spans: list[tuple[str, int, int, bool]]


def _normalized_weights(messages: list[Any]) -> list[tuple[str, float | None]]:
    """(role, weight) of each message the normalizer makes of ``messages``, in order (see the module doc)."""
    groups: list[list[Any]] = []  # [role, weight, count]
    for message in messages:
        weight = getattr(message, "weight", None)
        if not groups or groups[-1][0] != message.role or groups[-1][1] != weight:
            groups.append([message.role, weight, 0])
        groups[-1][2] += 1
    out: list[tuple[str, float | None]] = []
    for role, weight, count in groups:
        if role == "tool":
            out.extend([("tool", None)] * count)
        elif role in ("user", "assistant"):
            out.append((role, weight))
    if not out or out[0][0] != "user":
        out.insert(0, ("user", None))
    return out


def reference_full(conversation: dict[str, Any], fmt: str) -> Reference:
    """The reference encoding of ``conversation`` in ``fmt``; raises whatever mistral-common raises."""
    mt = mistral_tokenizer(fmt)
    request = chat_request(conversation)
    expected = mt.encode_chat_completion(request).tokens

    # encode_chat_completion, one step at a time.
    validated = mt._chat_completion_request_validator.validate_request(request)
    instruct = mt._instruct_request_normalizer.from_chat_completion_request(validated)
    it = mt.instruct_tokenizer
    if fmt == "v2":
        it._validate_tool_results(request=instruct)  # what InstructTokenizerV2.encode_instruct adds
    it.validate_messages(instruct.messages)
    weights = _normalized_weights(validated.messages)
    roles = [m.role for m in instruct.messages]
    assert roles == [role for role, _ in weights], (roles, weights)

    first_user_idx, last_user_idx = it.find_first_last_user(instruct)
    ids: list[int] = list(it.start())
    mask: list[bool] = [False] * len(ids)
    spans: list[tuple[str, int, int, bool]] = []
    for idx, msg in enumerate(instruct.messages):
        target = False
        if isinstance(msg, UserMessage):
            tokens, _, _ = it.encode_user_message(
                msg,
                instruct.available_tools,
                idx == last_user_idx,
                idx == first_user_idx,
                system_prompt=instruct.system_prompt,
                force_img_first=True,
                settings=instruct.settings,
            )
        elif isinstance(msg, ToolMessage):
            tokens, _, _ = it.encode_tool_message(msg, idx < last_user_idx)
        elif isinstance(msg, AssistantMessage):
            tokens = it.encode_assistant_message(message=msg, is_before_last_user_message=idx < last_user_idx)
            assert not msg.prefix, "finetuning mode rejects prefix messages"
            target = weights[idx][1] != 0
        elif isinstance(msg, SystemMessage):  # v7 and later only; kept for completeness
            tokens, _ = it.encode_system_message(msg)
        else:
            raise AssertionError(f"unknown message type {type(msg)}")
        spans.append((msg.role, len(ids), len(ids) + len(tokens), target))
        ids.extend(tokens)
        mask.extend([target] * len(tokens))

    assert ids == expected, "the per-message walk no longer reproduces encode_chat_completion"
    return Reference(ids=ids, mask=mask, spans=spans)


def reference(conversation: dict[str, Any], fmt: str) -> tuple[list[int], list[bool]]:
    """(ids, mask) of ``conversation`` in ``fmt`` as mistral-common 1.13 encodes it (the mask: module doc)."""
    ref = reference_full(conversation, fmt)
    return ref.ids, ref.mask


def reference_error(conversation: dict[str, Any], fmt: str) -> Exception | None:
    """The exception mistral-common raises on ``conversation`` in ``fmt``, or None when it encodes it.

    Any exception ``encode_chat_completion`` raises counts: pydantic's ValidationError while the messages
    are built, mistral-common's own exceptions, and the ValueError and assertions of its encoders.
    """
    mt = mistral_tokenizer(fmt)
    try:
        mt.encode_chat_completion(chat_request(conversation))
    except Exception as err:
        return err
    return None
