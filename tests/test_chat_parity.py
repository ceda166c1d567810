"""Chat parity with mistral-common: ``encode_chat`` ids and loss mask in the v1, v2 and v3 formats.

The reference is mistral-common 1.13's ``encode_chat_completion`` in finetuning mode, with the mask of
``chat_reference.py`` (assistant messages after normalization are targets unless their weight is 0).
Every test asks the same question of mistral-common and of bpetok; none compares with ids written down
here except ``test_pinned_*``, which also checks that mistral-common still gives those ids.

The strategies make conversations mistral-common accepts, by construction (a conversation it rejects is a
bug of the strategy, and fails as one): system prompts wherever the validator allows them, 1 to 20 turns,
consecutive messages of the same role (which the normalizer merges), weights 0 / 1 / None, content as a
string or as text chunks, and for v2 / v3 tools, tool calls and tool results, with text aimed at the places
an exact reimplementation can slip (whitespace runs, control and non-BMP characters, text that looks like
control pieces, trailing spaces that v2 / v3 strip from assistant content, JSON that Python's ``json``
normalizes in its own way). ``test_rejects_what_mistral_common_rejects`` mutates such conversations into
ones mistral-common refuses, and ``EDGE_CASES`` lists conversations at the edges of what it accepts.

Examples per run scale with the Hypothesis profile of conftest.py (``ci`` by default, ``dev`` ten times).
"""

from __future__ import annotations

import copy
import functools
import json
import string
from typing import Any

import pytest

pytest.importorskip("mistral_common")

import bpetok
from chat_reference import (
    FORMATS,
    VOCAB_FILES,
    missing_vocab_files,
    mistral_tokenizer,
    reference_error,
    reference_full,
)
from hypothesis import given, settings
from hypothesis import note as hypothesis_note
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

if missing_vocab_files():
    pytest.skip(
        f"reference vocabularies missing ({', '.join(map(str, missing_vocab_files()))}): "
        "the chat parity tests need ../shared/vocab beside the repository",
        allow_module_level=True,
    )


def scaled(n: int) -> int:
    """``n`` examples under the ``ci`` profile (1000 examples), proportionally more or fewer under others."""
    return max(10, n * settings.default.max_examples // 1000)


@functools.cache
def tokenizer(fmt: str) -> bpetok.Tokenizer:
    return bpetok.Tokenizer.from_file(VOCAB_FILES[fmt])


# ---- reports -----------------------------------------------------------------------------------------------


def note(text: str) -> None:
    """Hypothesis's ``note`` (printed with a failing example); outside a Hypothesis test, nothing."""
    try:
        hypothesis_note(text)
    except InvalidArgument:
        pass


def _piece(fmt: str, i: int) -> str:
    sp = mistral_tokenizer(fmt).instruct_tokenizer.tokenizer
    return sp.id_to_piece(i) if 0 <= i < sp.n_words else f"<bad id {i}>"


def describe(fmt: str, expected: list[int], got: list[int], window: int = 8) -> str:
    """Where bpetok's ids first part from mistral-common's, with the pieces around that place."""
    pos = next(
        (i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b),
        min(len(expected), len(got)),
    )
    lo, hi = max(0, pos - window), pos + window
    return (
        f"{fmt}: first difference at token {pos} (mistral-common {len(expected)} tokens, bpetok {len(got)})\n"
        f"  mistral-common [{lo}:{hi}]: {expected[lo:hi]} {[_piece(fmt, i) for i in expected[lo:hi]]}\n"
        f"  bpetok         [{lo}:{hi}]: {got[lo:hi]} {[_piece(fmt, i) for i in got[lo:hi]]}"
    )


def check_parity(conversation: dict[str, Any], fmt: str, *, train_on: str = "assistant") -> None:
    """bpetok's ids and mask for ``conversation`` are mistral-common's (which must accept it)."""
    note(f"conversation ({fmt}): {conversation!r}")
    ref = reference_full(conversation, fmt)
    snapshot = copy.deepcopy(conversation)
    enc = tokenizer(fmt).encode_chat(
        conversation["messages"], conversation.get("tools"), format=fmt, train_on=train_on
    )
    assert conversation == snapshot, "encode_chat changed its input"
    ids, mask = list(enc.ids), list(enc.mask)
    assert ids == ref.ids, describe(fmt, ref.ids, ids)
    expected_mask = ref.mask if train_on == "assistant" else [True] * len(ref.ids)
    if mask != expected_mask:
        pos = next(i for i, (a, b) in enumerate(zip(expected_mask, mask, strict=False)) if a != b)
        span = next(((r, s, e) for r, s, e, _ in ref.spans if s <= pos < e), ("bos", 0, 1))
        raise AssertionError(
            f"{fmt}: mask differs first at token {pos} ({_piece(fmt, ref.ids[pos])!r}), in the normalized "
            f"{span[0]} message of tokens [{span[1]}:{span[2]}]: "
            f"mistral-common {expected_mask[span[1] : span[2]]}, bpetok {mask[span[1] : span[2]]}"
        )


def check_either(
    conversation: dict[str, Any], fmt: str, message_index: int | tuple[int, ...] | None = None
) -> None:
    """If mistral-common rejects ``conversation``, bpetok raises ChatError (naming ``message_index``, or one
    of them, when given); if it accepts it, the encodings are equal."""
    err = reference_error(conversation, fmt)
    if err is None:
        check_parity(conversation, fmt)
        return
    note(f"mistral-common ({fmt}) rejects it: {type(err).__name__}: {err}")
    with pytest.raises(bpetok.ChatError) as info:
        tokenizer(fmt).encode_chat(conversation["messages"], conversation.get("tools"), format=fmt)
    if message_index is not None:
        allowed = (message_index,) if isinstance(message_index, int) else message_index
        assert info.value.message_index in allowed, (allowed, str(info.value))
        assert f"message {info.value.message_index}" in str(info.value), str(info.value)


# ---- text --------------------------------------------------------------------------------------------------

CHARS = st.characters(exclude_categories=("Cs",))  # anything but lone surrogates
FRAGMENTS = [
    " ",
    "  ",
    "   ",
    "\t",
    "\n",
    "\n\n",
    "\r\n",
    "\r",
    " \n ",
    "\x00",
    "\x01",
    "\x1b",
    "\x7f",
    "\x85",
    "\u00a0",
    "\u200b",
    "\u2028",
    "\u3000",
    "\ufeff",
    "\u2581",
    "\U0001f600",
    "\U0001f469\u200d\U0001f4bb",
    "\U0001d518",
    "\U0010fffd",
    "日本語",
    "中文",
    "한국어",
    "e\u0301",
    "\u0301",
    "a\u0308\u0323",
    "[INST]",
    "[/INST]",
    " [INST] ",
    "</s>",
    "<s>",
    "<unk>",
    "[TOOL_CALLS]",
    "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
    "[REFERENCE_DOC_1]",
    "[control_8]",
    "{",
    "}",
    '"',
    "\\",
    "\\n",
    '{"a": 1}',
    "null",
    "[]",
    "-0.0",
    "1e5",
]
WORDS = [
    "Hello",
    "world",
    "the",
    "a",
    "I",
    "42",
    "3.14",
    "x",
    "don't",
    "(ok)",
    "foo_bar",
    "Paris",
    ".",
    ",",
    "?!",
    "-",
]
WORD = st.text(alphabet=string.ascii_letters + string.digits + ".,;:!?'()-_/", min_size=1, max_size=10)
# One draw per piece most of the time: long conversations stay cheap to make.
PIECE = st.one_of(
    st.sampled_from(FRAGMENTS + WORDS + WORDS),
    st.sampled_from(FRAGMENTS + WORDS + WORDS),
    WORD,
    st.text(CHARS, min_size=1, max_size=4),
)
TEXT = st.lists(PIECE, max_size=6).map("".join)
NONEMPTY_TEXT = st.lists(PIECE, min_size=1, max_size=6).map("".join)
# v2 / v3 strip trailing spaces (only spaces) from assistant content.
ASSISTANT_TEXT = st.tuples(
    NONEMPTY_TEXT, st.sampled_from(["", "", "", " ", "  ", "\t ", " \n ", "    "])
).map("".join)


def chunk(text: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    return text.map(lambda t: {"type": "text", "text": t})


# Chunks are joined with "\n\n" and empty ones skipped; a user or system content may be empty.
ANY_CONTENT = st.one_of(TEXT, TEXT, st.lists(chunk(TEXT), max_size=3))
# An assistant content must not be empty once its chunks are joined.
ASSISTANT_CONTENT = st.one_of(
    ASSISTANT_TEXT,
    ASSISTANT_TEXT,
    st.tuples(
        st.lists(chunk(TEXT), max_size=2), chunk(ASSISTANT_TEXT), st.lists(chunk(TEXT), max_size=1)
    ).map(lambda t: [*t[0], t[1], *t[2]]),
)

ABSENT = object()  # a key left out of a dict
WEIGHTS = st.sampled_from([ABSENT, ABSENT, ABSENT, None, 0, 1, 0, 1, 0.0, 1.0])


def weight_of(message: dict[str, Any]) -> Any:
    """The weight the normalizer groups by: absent and None are the same, 0 and 0.0 too."""
    return message.get("weight")


def put(d: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    if value is not ABSENT:
        d[key] = value
    return d


# ---- JSON (tool arguments, tool results, schemas) ----------------------------------------------------------

NAME_CHARS = string.ascii_letters + string.digits + "_-"
NAME = st.one_of(
    st.sampled_from(["get_weather", "search", "f", "run-code", "A1"]),
    st.text(alphabet=NAME_CHARS, min_size=1, max_size=64),
)
KEY = st.one_of(
    WORD, TEXT, st.sampled_from(["a", "b", "id", "name", "location", "\u00e9t\u00e9", "\U0001f600"])
)
SMALL_TEXT = st.lists(PIECE, max_size=3).map("".join)
JSON_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-1000, 1000),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1e16, 1e-5, 1.5e300, 5e-324, 0.1, 100.0, 123456789012345680.0]),
    SMALL_TEXT,
)
JSON_VALUE = st.recursive(
    JSON_SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEY, inner, max_size=3)),
    max_leaves=8,
)
JSON_OBJECT = st.dictionaries(KEY, JSON_VALUE, max_size=4)
# Decimal numbers as written by hand, parsed by Python into floats (exponents kept small: no infinity).
DECIMAL_TEXT = st.from_regex(
    r"-?(0|[1-9][0-9]{0,15})(\.[0-9]{1,17}([eE][+-]?[0-9]{1,2})?|[eE][+-]?[0-9]{1,2})", fullmatch=True
)
WS = st.sampled_from(["", "", "", " ", "\n", "\t", "  ", "\r\n"])


@st.composite
def json_text(draw: st.DrawFn, value: Any) -> str:
    """``value`` written as JSON text in one of the many ways Python's ``json.loads`` reads it back."""

    def render(v: Any) -> str:
        if isinstance(v, dict):
            items = [f"{render(k)}{draw(WS)}:{draw(WS)}{render(x)}" for k, x in v.items()]
            return "{" + draw(WS) + f"{draw(WS)},{draw(WS)}".join(items) + draw(WS) + "}"
        if isinstance(v, list):
            return "[" + draw(WS) + f",{draw(WS)}".join(render(x) for x in v) + draw(WS) + "]"
        if isinstance(v, str):
            s = json.dumps(v, ensure_ascii=draw(st.booleans()))
            return s.replace("/", "\\/") if draw(st.booleans()) else s
        if isinstance(v, bool) or v is None:
            return json.dumps(v)
        if isinstance(v, int):
            return draw(st.sampled_from([str(v), str(v), "-0" if v == 0 else str(v)]))
        if isinstance(v, float):
            if draw(st.integers(0, 9)) == 0:
                return draw(DECIMAL_TEXT)
            return draw(st.sampled_from(["{!r}", "{:e}", "{:E}", "{:.17g}"])).format(v)
        raise TypeError(v)

    return draw(WS) + render(value) + draw(WS)


BROKEN_JSON = st.sampled_from(["{", '{"a": }', "{'a': 1}", "[1, 2", "not json", "{} {}", "tru", '"open'])
ARGUMENTS = st.one_of(
    JSON_OBJECT.flatmap(json_text),
    JSON_OBJECT.flatmap(json_text),
    JSON_VALUE.flatmap(json_text),
    JSON_OBJECT,
    TEXT,
    BROKEN_JSON,
    st.just(""),
    st.none(),
)
TOOL_RESULT_TEXT = st.one_of(JSON_VALUE.flatmap(json_text), TEXT, BROKEN_JSON, st.just(""))
TOOL_RESULT_CONTENT = st.one_of(
    TOOL_RESULT_TEXT, TOOL_RESULT_TEXT, st.lists(chunk(TOOL_RESULT_TEXT), max_size=2)
)


@st.composite
def parameter_schema(draw: st.DrawFn) -> dict[str, Any]:
    """A valid JSON-Schema (draft 7) for a function's parameters."""
    if draw(st.integers(0, 5)) == 0:
        return {}
    properties: dict[str, Any] = {}
    for name in draw(st.lists(KEY, max_size=4, unique=True)):
        prop: dict[str, Any] = {
            "type": draw(st.sampled_from(["string", "integer", "number", "boolean", "array"]))
        }
        if draw(st.booleans()):
            prop["description"] = draw(TEXT)
        if draw(st.integers(0, 3)) == 0:
            prop["enum"] = draw(
                st.lists(st.one_of(SMALL_TEXT, st.integers(-5, 5)), min_size=1, max_size=3, unique=True)
            )
        if draw(st.integers(0, 3)) == 0:
            prop["minimum"] = draw(st.floats(allow_nan=False, allow_infinity=False))
        if draw(st.integers(0, 4)) == 0:
            prop["default"] = draw(JSON_VALUE)
        properties[name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if properties and draw(st.booleans()):
        schema["required"] = draw(st.lists(st.sampled_from(sorted(properties)), unique=True, max_size=3))
    if draw(st.integers(0, 3)) == 0:
        schema["additionalProperties"] = False
    order = draw(st.permutations(list(schema)))  # key order is kept in the tokens
    return {k: schema[k] for k in order}


@st.composite
def tool_definition(draw: st.DrawFn) -> dict[str, Any]:
    function = {"name": draw(NAME)}
    put(function, "description", draw(st.one_of(st.just(ABSENT), TEXT)))
    function["parameters"] = draw(parameter_schema())
    put(function, "strict", draw(st.sampled_from([ABSENT] * 6 + [True, False])))  # left out of the tokens
    order = draw(st.permutations(list(function)))
    return put({}, "type", draw(st.sampled_from([ABSENT, "function"]))) | {
        "function": {k: function[k] for k in order}
    }


# ---- conversations -----------------------------------------------------------------------------------------

ALNUM = string.ascii_letters + string.digits
V3_ID = st.text(alphabet=ALNUM, min_size=9, max_size=9)
V2_ID = st.one_of(V3_ID, TEXT, st.just("null"))


class Builder:
    """Draws one conversation of ``fmt`` message by message, keeping to what mistral-common accepts."""

    def __init__(self, draw: st.DrawFn, fmt: str) -> None:
        self.draw, self.fmt = draw, fmt
        self.messages: list[dict[str, Any]] = []
        self.tool_names: list[str] = []

    def system(self) -> None:
        self.messages.append({"role": "system", "content": self.draw(ANY_CONTENT)})

    def users(self) -> None:
        """1 to 3 user messages, now and then a system message after one (user -> system is allowed)."""
        for _ in range(self.draw(st.sampled_from([1, 1, 1, 2, 3]))):
            self.messages.append({"role": "user", "content": self.draw(ANY_CONTENT)})
            if self.draw(st.integers(0, 6)) == 0:
                self.system()

    def content_message(self) -> None:
        message = {"role": "assistant", "content": self.draw(ASSISTANT_CONTENT)}
        put(message, "tool_calls", self.draw(st.sampled_from([ABSENT, ABSENT, ABSENT, None, []])))
        put(message, "prefix", self.draw(st.sampled_from([ABSENT] * 9 + [False])))
        self.messages.append(put(message, "weight", self.draw(WEIGHTS)))

    def call_message(self, calls: int, last: bool) -> list[str]:
        """An assistant message with ``calls`` tool calls; returns their ids."""
        draw = self.draw
        prev = self.messages[-1] if self.messages else {}
        weight = draw(WEIGHTS)
        if prev.get("role") == "assistant":  # same weight: merged with the content before, which is refused
            weight = draw(WEIGHTS.filter(lambda w: w is not ABSENT and w != weight_of(prev)))
        ids = []
        tool_calls = []
        for _ in range(calls):
            if self.fmt == "v3":
                call_id = draw(st.one_of(V3_ID, st.sampled_from(["null", ABSENT]))) if last else draw(V3_ID)
            else:
                call_id = draw(st.one_of(V2_ID, st.just(ABSENT)))
            ids.append("null" if call_id is ABSENT else call_id)
            name = (
                draw(st.sampled_from(self.tool_names))
                if self.tool_names and draw(st.booleans())
                else draw(NAME)
            )
            call = put({}, "id", call_id)
            put(call, "type", draw(st.sampled_from([ABSENT, "function"])))
            call["function"] = {"name": name, "arguments": draw(ARGUMENTS)}
            tool_calls.append(call)
        message = {"role": "assistant"}
        put(message, "content", draw(st.sampled_from([ABSENT, ABSENT, None, "", []])))
        message["tool_calls"] = tool_calls
        self.messages.append(put(message, "weight", weight))
        return ids

    def tool_results(self, ids: list[str]) -> None:
        draw = self.draw
        for call_id in draw(st.permutations(ids)):
            message: dict[str, Any] = {"role": "tool", "content": draw(TOOL_RESULT_CONTENT)}
            if self.fmt == "v3":
                message["tool_call_id"] = (
                    call_id if call_id != "null" and draw(st.integers(0, 4)) else draw(V3_ID)
                )
            else:
                put(message, "tool_call_id", draw(st.sampled_from([ABSENT, None, call_id])))
            put(message, "name", draw(st.one_of(st.just(ABSENT), st.none(), NAME)))
            self.messages.append(message)

    def assistants(self, *, final: bool, after_last_user: bool, content_first: bool = False) -> None:
        """1 to 3 steps: content messages, or a tool-call message and its results. The final block ends
        with an assistant message; the tool calls of the very last message have no results."""
        draw = self.draw
        steps = draw(st.sampled_from([1, 1, 2, 3]))
        for step in range(steps):
            last_step = final and step == steps - 1
            calls = self.fmt != "v1" and not (content_first and step == 0) and draw(st.integers(0, 2)) == 0
            if not calls:
                for _ in range(draw(st.sampled_from([1, 1, 1, 2]))):
                    self.content_message()
                continue
            # v2 refuses more than one result for a call turn after the last user message.
            most = 1 if self.fmt == "v2" and after_last_user and not last_step else 3
            ids = self.call_message(draw(st.integers(1, most)), last=last_step)
            if not last_step:
                self.tool_results(ids)


@st.composite
def conversations(draw: st.DrawFn, fmt: str) -> dict[str, Any]:
    """A conversation mistral-common accepts in ``fmt`` (finetuning mode: it ends with an assistant)."""
    b = Builder(draw, fmt)
    tools = ABSENT
    if fmt != "v1":
        tools = draw(
            st.one_of(
                st.sampled_from([ABSENT, None, []]),
                st.lists(tool_definition(), min_size=1, max_size=3),
                st.lists(tool_definition(), min_size=1, max_size=3),
            )
        )
        if isinstance(tools, list):
            b.tool_names = [t["function"]["name"] for t in tools]
    lead = draw(st.sampled_from(["", "", "", "system", "system", "assistant", "system assistant"]))
    if "system" in lead:
        for _ in range(draw(st.integers(1, 2))):
            b.system()
    if "assistant" in lead:  # before any user message; the first message may not be a tool call
        b.assistants(final=False, after_last_user=False, content_first=not b.messages)
    turns = draw(st.one_of(st.integers(1, 3), st.integers(1, 3), st.integers(1, 20)))
    for turn in range(turns):
        b.users()
        b.assistants(final=turn == turns - 1, after_last_user=turn == turns - 1)
    return put({"messages": b.messages}, "tools", tools)


# ---- parity ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=scaled(400))
@given(data=st.data())
def test_encode_chat_matches_mistral_common(fmt: str, data: st.DataObject) -> None:
    check_parity(data.draw(conversations(fmt), label="conversation"), fmt)


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=scaled(60))
@given(data=st.data())
def test_train_on_all_marks_every_token(fmt: str, data: st.DataObject) -> None:
    check_parity(data.draw(conversations(fmt), label="conversation"), fmt, train_on="all")


@settings(max_examples=scaled(40))
@given(data=st.data())
def test_batch_is_the_conversations_one_by_one(data: st.DataObject) -> None:
    fmt = data.draw(st.sampled_from(FORMATS), label="fmt")
    convs = data.draw(st.lists(conversations(fmt), max_size=6), label="conversations")
    train_on = data.draw(st.sampled_from(["assistant", "all"]), label="train_on")
    threads = data.draw(st.sampled_from([None, 1, 2, 3]), label="num_threads")
    tok = tokenizer(fmt)
    batch = tok.encode_chat_batch(convs, format=fmt, train_on=train_on, num_threads=threads)
    assert len(batch) == len(convs)
    for conv, enc in zip(convs, batch, strict=True):
        one = tok.encode_chat(conv["messages"], conv.get("tools"), format=fmt, train_on=train_on)
        assert (list(enc.ids), list(enc.mask)) == (list(one.ids), list(one.mask))
        ref = reference_full(conv, fmt)
        assert list(enc.ids) == ref.ids, describe(fmt, ref.ids, list(enc.ids))
        assert list(enc.mask) == (ref.mask if train_on == "assistant" else [True] * len(ref.ids))


@settings(max_examples=scaled(30))
@given(data=st.data())
def test_batch_names_the_conversation_at_fault(data: st.DataObject) -> None:
    """A batch with a conversation mistral-common refuses raises ChatError naming it and its message."""
    fmt = data.draw(st.sampled_from(FORMATS), label="fmt")
    good = data.draw(st.lists(conversations(fmt), max_size=3), label="good")
    bad, index, kind = data.draw(invalid_conversations(fmt), label="bad")
    note(f"change: {kind}, message {index}")
    if reference_error(bad, fmt) is None:
        return  # the change happened to make a conversation mistral-common accepts
    at = data.draw(st.integers(0, len(good)), label="at")
    batch = [*good[:at], bad, *good[at:]]
    with pytest.raises(bpetok.ChatError) as info:
        tokenizer(fmt).encode_chat_batch(batch, format=fmt, num_threads=data.draw(st.sampled_from([1, 2])))
    assert info.value.conversation == at, str(info.value)
    assert f"conversation {at}" in str(info.value), str(info.value)
    if index is not None:
        assert info.value.message_index in ((index,) if isinstance(index, int) else index), str(info.value)


def test_module_level_encode_chat_is_the_embedded_vocabulary_in_v1() -> None:
    conv = PINNED_V1_CONVERSATION
    enc = bpetok.encode_chat(conv["messages"])
    assert (list(enc.ids), list(enc.mask)) == (list(PINNED["v1"][1]), reference_full(conv, "v1").mask)


def test_format_defaults_to_the_vocabulary() -> None:
    """format=None: v3 for a vocabulary with the control piece [INST], v1 for one without."""
    # Without tools, v2 and v3 encode alike: the v2 vocabulary (which has [INST]) can be checked as v2.
    conv = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello "}]}
    for fmt in FORMATS:
        enc = tokenizer(fmt).encode_chat(conv["messages"])
        ref = reference_full(conv, fmt)
        assert (list(enc.ids), list(enc.mask)) == (ref.ids, ref.mask), fmt
    assert reference_full(conv, "v1").ids != reference_full(conv, "v3").ids


# ---- rejection ---------------------------------------------------------------------------------------------


def _assistant_indexes(messages: list[dict[str, Any]], calls: bool | None = None) -> list[int]:
    return [
        i
        for i, m in enumerate(messages)
        if m["role"] == "assistant" and (calls is None or bool(m.get("tool_calls")) == calls)
    ]


def merged_with(messages: list[dict[str, Any]], i: int) -> tuple[int, ...]:
    """The indexes of the messages the normalizer merges with message ``i`` (same role and weight)."""
    key = (messages[i]["role"], weight_of(messages[i]))
    lo, hi = i, i
    while lo > 0 and (messages[lo - 1]["role"], weight_of(messages[lo - 1])) == key:
        lo -= 1
    while hi + 1 < len(messages) and (messages[hi + 1]["role"], weight_of(messages[hi + 1])) == key:
        hi += 1
    return tuple(range(lo, hi + 1))


@st.composite
def invalid_conversations(
    draw: st.DrawFn, fmt: str
) -> tuple[dict[str, Any], int | tuple[int, ...] | None, str]:
    """A valid conversation with one change mistral-common (most often) refuses; with the index of the
    message at fault where the change makes one message wrong on its own, and the change's name."""
    conv = copy.deepcopy(draw(conversations(fmt)))
    msgs = conv["messages"]
    n = len(msgs)
    kinds = [
        "unknown role",
        "extra key",
        "weight",
        "empty",
        "last not assistant",
        "bad order",
        "user content none",
        "chunk extra key",
        "chunk type",
    ]
    with_calls = _assistant_indexes(msgs, calls=True)
    tools_msgs = [i for i, m in enumerate(msgs) if m["role"] == "tool"]
    if _assistant_indexes(msgs, calls=False):
        kinds += ["neither content nor calls"]
    if with_calls:
        kinds += ["content and calls", "bad call name", "call extra key", "too many results"]
    if fmt == "v3" and with_calls:
        kinds += ["bad v3 id"]
    if fmt == "v3" and tools_msgs:
        kinds += ["bad v3 result id", "no v3 result id"]
    if tools_msgs:
        kinds += ["bad result name"]
    if fmt != "v1":
        kinds += ["bad tool name", "tool extra key", "parameters not an object"]
    else:
        kinds += ["v1 tool calls"]
    kind = draw(st.sampled_from(kinds))
    index: int | tuple[int, ...] | None = None
    bad_names = st.sampled_from(["", "get weather", "x" * 65, "caf\u00e9", "a.b", "f(x)", "[INST]"])
    if kind == "unknown role":
        index = draw(st.integers(0, n - 1))
        msgs[index]["role"] = draw(st.sampled_from(["function", "developer", "User", "", "ASSISTANT", None]))
    elif kind == "extra key":
        index = draw(st.integers(0, n - 1))
        key = draw(st.sampled_from(["foo", "prefix_", "tool_call_id", "name", "weight", "tool_calls"]))
        valid_here = {
            "user": set(),
            "system": set(),
            "assistant": {"weight", "tool_calls"},
            "tool": {"tool_call_id", "name"},
        }[msgs[index]["role"]]
        if key in valid_here or key in msgs[index]:
            key = "foo"
        msgs[index][key] = "x"
    elif kind == "weight":
        index = draw(st.sampled_from(_assistant_indexes(msgs)))
        msgs[index]["weight"] = draw(st.sampled_from([0.5, 2, -1, 1.01, float("nan"), float("inf")]))
    elif kind == "empty":
        msgs.clear()
    elif kind == "last not assistant":
        msgs.append({"role": draw(st.sampled_from(["user", "system"])), "content": draw(TEXT)})
        index = n
    elif kind == "bad order":
        # a system message after an assistant or tool message, or a tool message after a user or system one
        candidates = [i for i in range(n - 1) if msgs[i]["role"] in ("assistant", "tool", "user", "system")]
        after = draw(st.sampled_from(candidates)) if candidates else 0
        if msgs[after]["role"] in ("assistant", "tool"):
            msgs.insert(after + 1, {"role": "system", "content": draw(TEXT)})
        else:
            msgs.insert(after + 1, {"role": "tool", "content": "1", "tool_call_id": "abcdefghi"})
        index = after + 1
    elif kind == "user content none":
        users = [i for i, m in enumerate(msgs) if m["role"] in ("user", "system")]
        index = draw(st.sampled_from(users))
        msgs[index]["content"] = None
    elif kind == "neither content nor calls":
        index = draw(st.sampled_from(_assistant_indexes(msgs, calls=False)))
        msgs[index].pop("tool_calls", None)
        msgs[index]["content"] = draw(st.sampled_from(["", None, []]))
    elif kind == "chunk extra key":
        index = draw(st.integers(0, n - 1))
        msgs[index]["content"] = [{"type": "text", "text": "x", "extra": 1}]
    elif kind == "chunk type":
        index = draw(st.sampled_from([i for i, m in enumerate(msgs) if m["role"] != "tool"]))
        msgs[index]["content"] = [{"type": draw(st.sampled_from(["txt", "thinking", "audio"])), "text": "x"}]
    elif kind == "content and calls":
        index = draw(st.sampled_from(with_calls))
        msgs[index]["content"] = draw(NONEMPTY_TEXT)
    elif kind == "bad call name":
        index = draw(st.sampled_from(with_calls))
        msgs[index]["tool_calls"][0]["function"]["name"] = draw(bad_names)
    elif kind == "call extra key":
        index = draw(st.sampled_from(with_calls))
        call = msgs[index]["tool_calls"][-1]
        if draw(st.booleans()):
            call["extra"] = 1
        else:
            call["function"]["extra"] = 1
    elif kind == "too many results":
        i = draw(st.sampled_from(with_calls))
        extra = {"role": "tool", "content": "1", "tool_call_id": "abcdefghi"}
        if i == n - 1:  # the last message: give it one result more than it has calls, and an answer
            msgs.extend([dict(extra) for _ in range(len(msgs[i]["tool_calls"]) + 1)])
            msgs.append({"role": "assistant", "content": "ok"})
        else:
            msgs.insert(i + 1, extra)
    elif kind == "bad v3 id":
        index = draw(st.sampled_from([i for i in with_calls if i != n - 1] or with_calls))
        bad = ["abcdefgh", "abcdefghij", "abc-efghi", "", "\u00e9bcdefghi"] + (
            ["null"] if index != n - 1 else []
        )
        msgs[index]["tool_calls"][0]["id"] = draw(st.sampled_from(bad))
    elif kind == "bad v3 result id":
        index = draw(st.sampled_from(tools_msgs))
        msgs[index]["tool_call_id"] = draw(
            st.sampled_from(["null", "abcdefgh", "abcdefghij", "", "abc_efghi"])
        )
    elif kind == "no v3 result id":
        index = draw(st.sampled_from(tools_msgs))
        msgs[index].pop("tool_call_id")
    elif kind == "bad result name":
        index = draw(st.sampled_from(tools_msgs))
        msgs[index]["name"] = draw(bad_names)
    elif kind == "bad tool name":
        conv["tools"] = [
            *(conv.get("tools") or []),
            {"type": "function", "function": {"name": draw(bad_names), "parameters": {}}},
        ]
    elif kind == "tool extra key":
        tool = {"type": "function", "function": {"name": "f", "parameters": {}}}
        if draw(st.booleans()):
            tool["extra"] = 1
        else:
            tool["function"]["extra"] = 1
        conv["tools"] = [*(conv.get("tools") or []), tool]
    elif kind == "parameters not an object":  # (bpetok does not check schemas against JSON-Schema draft 7)
        parameters = draw(st.sampled_from([[], "{}", 1, None, True]))
        conv["tools"] = [{"type": "function", "function": {"name": "f", "parameters": parameters}}]
    elif kind == "v1 tool calls":  # the last message: a call elsewhere also lacks its results
        msgs[n - 1].pop("content")
        msgs[n - 1]["tool_calls"] = [{"id": "abcdefghi", "function": {"name": "f", "arguments": "{}"}}]
        index = merged_with(msgs, n - 1)  # the error is the merged message's
    else:
        raise AssertionError(kind)
    return conv, index, kind


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=scaled(150))
@given(data=st.data())
def test_rejects_what_mistral_common_rejects(fmt: str, data: st.DataObject) -> None:
    conv, index, kind = data.draw(invalid_conversations(fmt), label="invalid conversation")
    note(f"change: {kind}, message {index}")
    check_either(conv, fmt, message_index=index)


def test_tools_in_v1_are_refused() -> None:
    """mistral-common drops the tools of a v1 conversation without a word; bpetok refuses them."""
    conv = {
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    }
    assert reference_error(conv, "v1") is None
    with pytest.raises(bpetok.ChatError):
        tokenizer("v1").encode_chat(conv["messages"], conv["tools"], format="v1")


# ---- edges of what mistral-common accepts ------------------------------------------------------------------


def _call(arguments: Any, name: str = "f", call_id: str = "abcdefghi") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _with_call(call: dict[str, Any], tools: Any = ABSENT, prompt: str = "q") -> dict[str, Any]:
    return put(
        {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "tool_calls": [call]}]},
        "tools",
        tools,
    )


def _with_result(content: Any, tool_call_id: str = "abcdefghi") -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "tool_calls": [_call("{}")]},
            {"role": "tool", "content": content, "tool_call_id": tool_call_id},
            {"role": "assistant", "content": "done"},
        ]
    }


# (name, conversation, formats): each is either encoded as mistral-common encodes it or refused as it is.
EDGE_CASES: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("arguments NaN", _with_call(_call('{"a": NaN, "b": -Infinity}')), ("v2", "v3")),
    ("arguments overflow to Infinity", _with_call(_call('{"a": 1e400, "b": -1E999}')), ("v2", "v3")),
    ("arguments big integer", _with_call(_call('{"a": 123456789012345678901234567890}')), ("v2", "v3")),
    ("arguments big negative integer", _with_call(_call("[-98765432109876543210]")), ("v2", "v3")),
    (
        "arguments u64 max",
        _with_call(_call('{"a": 18446744073709551615, "b": -9223372036854775808}')),
        ("v2", "v3"),
    ),
    ("arguments duplicate keys", _with_call(_call('{"a": 1, "b": 2, "a": 3}')), ("v2", "v3")),
    (
        "arguments float formats",
        _with_call(_call("[1E5, 1e16, 1e-5, 0.1e1, -0.0, -0, 1.0e+2, 5e-324]")),
        ("v2", "v3"),
    ),
    (
        "arguments shortest float repr",
        _with_call(_call("[0.30000000000000004, 2.2250738585072014e-308]")),
        ("v2", "v3"),
    ),
    (
        "arguments many digits",
        _with_call(_call("[3.141592653589793238462643383279, 1.00000000000000011102230246251565]")),
        ("v2", "v3"),
    ),
    # Python's repr picks the nearest of two shortest strings, ties to even (.125 -> .12, .375 -> .38).
    (
        "arguments float repr ties",
        _with_call(_call("[173902696765825.125, -872210563008191.25, 140737488355328.375]")),
        ("v2", "v3"),
    ),
    ("arguments dict float repr tie", _with_call(_call({"a": 173902696765825.125})), ("v2", "v3")),
    (
        "arguments escapes",
        _with_call(_call('{"\\u00e9\\ud83d\\ude00": "\\/\\b\\f\\n\\r\\t\\u0000\\u001f\\"\\\\"}')),
        ("v2", "v3"),
    ),
    ("arguments lone surrogate", _with_call(_call('"\\ud800"')), ("v2", "v3")),
    ("arguments null", _with_call(_call("null")), ("v2", "v3")),
    ("arguments whitespace only", _with_call(_call("  ")), ("v2", "v3")),
    ("arguments dict with NaN", _with_call(_call({"a": float("nan")})), ("v2", "v3")),
    ("arguments dict with int key", _with_call(_call({1: "one"})), ("v2", "v3")),
    ("arguments dict with tuple", _with_call(_call({"a": (1, 2)})), ("v2", "v3")),
    ("arguments dict with big int", _with_call(_call({"a": 2**70})), ("v2", "v3")),
    ("arguments dict with control chars", _with_call(_call({"\x00": "\x1f\x7f\u2028"})), ("v2", "v3")),
    ("tool result null", _with_result("null"), ("v2", "v3")),
    ("tool result empty", _with_result(""), ("v2", "v3")),
    ("tool result empty chunks", _with_result([]), ("v2", "v3")),
    (
        "tool result chunks join to JSON",
        _with_result([{"type": "text", "text": "["}, {"type": "text", "text": "1]"}]),
        ("v2", "v3"),
    ),
    ("tool result NaN", _with_result("NaN"), ("v2", "v3")),
    ("tool result lone surrogate", _with_result('"\\udfff"'), ("v2", "v3")),
    ("function name with trailing newline (re $)", _with_call(_call("{}", name="get\n")), ("v2", "v3")),
    (
        "tool name with trailing newline",
        _with_call(_call("{}"), tools=[{"function": {"name": "get\n", "parameters": {}}}]),
        ("v2", "v3"),
    ),
    (
        "v3 id with trailing newline",
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "tool_calls": [_call("{}", call_id="abcdefghi\n")]},
                {"role": "tool", "content": "1", "tool_call_id": "abcdefghi\n"},
                {"role": "assistant", "content": "a"},
            ]
        },
        ("v3",),
    ),
    (
        "function strict",
        _with_call(
            _call("{}"),
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}, "strict": True}}],
        ),
        ("v2", "v3"),
    ),
    (
        "tool call without type and id",
        _with_call({"function": {"name": "f", "arguments": "{}"}}),
        ("v2", "v3"),
    ),
    (
        "assistant prefix false",
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a", "prefix": False},
            ]
        },
        FORMATS,
    ),
    (
        "assistant prefix true",
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a", "prefix": True},
            ]
        },
        FORMATS,
    ),
    (
        "first message is a tool result",
        {
            "messages": [
                {"role": "tool", "content": "1", "tool_call_id": "abcdefghi"},
                {"role": "assistant", "content": "a"},
            ]
        },
        FORMATS,
    ),
    (
        "first message is a tool call",
        {
            "messages": [
                {"role": "assistant", "tool_calls": [_call("{}")]},
                {"role": "tool", "content": "1", "tool_call_id": "abcdefghi"},
                {"role": "assistant", "content": "a"},
            ]
        },
        FORMATS,
    ),
    (
        "first message is a tool call, then a user",
        {
            "messages": [
                {"role": "assistant", "tool_calls": [_call("{}")]},
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a"},
            ]
        },
        FORMATS,
    ),
    (
        "system then assistant",
        {"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]},
        FORMATS,
    ),
    (
        "only system and assistant, empty system",
        {"messages": [{"role": "system", "content": ""}, {"role": "assistant", "content": "a"}]},
        FORMATS,
    ),
    (
        "system of one empty chunk",
        {
            "messages": [
                {"role": "system", "content": [{"type": "text", "text": ""}]},
                {"role": "system", "content": "s"},
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a"},
            ]
        },
        FORMATS,
    ),
    (
        "assistant of spaces",
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "   "}]},
        FORMATS,
    ),
    (
        "assistant of one empty chunk",
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": [{"type": "text", "text": ""}]},
            ]
        },
        FORMATS,
    ),
    (
        "empty chunk merged with a tool call",
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": [{"type": "text", "text": ""}]},
                {"role": "assistant", "tool_calls": [_call("{}")]},
            ]
        },
        ("v2", "v3"),
    ),
    (
        "content merged with a tool call",
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a"},
                {"role": "assistant", "tool_calls": [_call("{}")]},
            ]
        },
        ("v2", "v3"),
    ),
    (
        "content and tool call of other weights",
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a", "weight": 0},
                {"role": "assistant", "tool_calls": [_call("{}")], "weight": 1},
            ]
        },
        ("v2", "v3"),
    ),
    (
        "tool calls empty list with content",
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a", "tool_calls": []},
            ]
        },
        FORMATS,
    ),
    (
        "fewer results than calls, then a user and an answer",
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "tool_calls": [_call("{}"), _call("{}", call_id="bcdefghij")]},
                {"role": "tool", "content": "1", "tool_call_id": "abcdefghi"},
                {"role": "user", "content": "q2"},
                {"role": "assistant", "content": "a"},
            ]
        },
        ("v2", "v3"),
    ),
    (
        "v2 two results after the last user",
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "tool_calls": [_call("{}"), _call("{}", call_id="bcdefghij")]},
                {"role": "tool", "content": "1", "tool_call_id": "abcdefghi"},
                {"role": "tool", "content": "2", "tool_call_id": "bcdefghij"},
                {"role": "assistant", "content": "a"},
            ]
        },
        ("v2", "v3"),
    ),
    (
        "v2 two results before the last user",
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "tool_calls": [_call("{}"), _call("{}", call_id="bcdefghij")]},
                {"role": "tool", "content": "1", "tool_call_id": "abcdefghi"},
                {"role": "tool", "content": "2", "tool_call_id": "bcdefghij"},
                {"role": "user", "content": "q2"},
                {"role": "assistant", "content": "a"},
            ]
        },
        ("v2", "v3"),
    ),
    (
        "weights as floats",
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a", "weight": 0.0},
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "b", "weight": 1.0},
            ]
        },
        FORMATS,
    ),
    (
        "weight True",
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a", "weight": True},
            ]
        },
        FORMATS,
    ),
    (
        "weight as strings",
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a", "weight": " 1 "},
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "b", "weight": "1.0"},
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "c", "weight": "0e0"},
            ]
        },
        FORMATS,
    ),
    (
        "weight as a string not 0 or 1",
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a", "weight": "0.5"},
            ]
        },
        FORMATS,
    ),
    (
        "weight as a word",
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a", "weight": "one"},
            ]
        },
        FORMATS,
    ),
    (
        "weight as a string",
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a", "weight": "0"},
            ]
        },
        FORMATS,
    ),
    (
        "content as a number",
        {"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "a"}]},
        FORMATS,
    ),
    (
        "user, system, user",
        {
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "system", "content": "s"},
                {"role": "user", "content": "b"},
                {"role": "assistant", "content": "c"},
            ]
        },
        FORMATS,
    ),
    (
        "tools empty list",
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "tools": []},
        ("v2", "v3"),
    ),
    (
        "schema float repr tie",
        _with_call(
            _call("{}"),
            tools=[
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "parameters": {
                            "type": "object",
                            "properties": {"x": {"type": "number", "minimum": 173902696765825.125}},
                        },
                    },
                }
            ],
        ),
        ("v2", "v3"),
    ),
    (
        "schema with unicode and floats",
        _with_call(
            _call("{}"),
            tools=[
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "description": "d\u00e9\n",
                        "parameters": {
                            "type": "object",
                            "properties": {
                                "\u00e9": {
                                    "type": "number",
                                    "minimum": 1e16,
                                    "maximum": -0.0,
                                    "default": 1e-7,
                                }
                            },
                        },
                    },
                }
            ],
        ),
        ("v2", "v3"),
    ),
]


@pytest.mark.parametrize(
    ("fmt", "conversation"),
    [pytest.param(fmt, conv, id=f"{fmt}-{name}") for name, conv, fmts in EDGE_CASES for fmt in fmts],
)
def test_edge_cases(fmt: str, conversation: dict[str, Any]) -> None:
    check_either(conversation, fmt)


# ---- pinned ids --------------------------------------------------------------------------------------------

PINNED_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
                "required": ["city"],
            },
        },
    }
]
PINNED_TOOL_CONVERSATION = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call00001",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 1}'},
                }
            ],
        },
        {"role": "tool", "name": "get_weather", "tool_call_id": "call00001", "content": '{"temp": 21.5}'},
        {"role": "assistant", "content": "21.5 degrees. "},
    ],
    "tools": PINNED_TOOLS,
}
PINNED_V1_CONVERSATION = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!", "weight": 0},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Sunny."},
    ]
}

# Exact ids (and the [start, end) token spans that are targets), from mistral-common 1.13.1.
PINNED = {
    "v1": (
        PINNED_V1_CONVERSATION,
        [
            1,
            733,
            16289,
            28793,
            1739,
            6817,
            28723,
            13,
            13,
            23809,
            733,
            28748,
            16289,
            28793,
            22557,
            28808,
            2,
            733,
            16289,
            28793,
            816,
            1223,
            297,
            5465,
            28804,
            733,
            28748,
            16289,
            28793,
            7057,
            1780,
            28723,
            2,
        ],
        [(29, 33)],
    ),
    "v2": (
        PINNED_TOOL_CONVERSATION,
        [
            1,
            6,
            1501,
            7567,
            1891,
            2032,
            1113,
            3396,
            1316,
            1113,
            3396,
            2032,
            10598,
            1629,
            2032,
            1113,
            1295,
            29498,
            1537,
            1991,
            1316,
            1113,
            7286,
            2032,
            1113,
            3092,
            1991,
            1065,
            1032,
            3758,
            1316,
            1113,
            12206,
            2032,
            10598,
            1891,
            2032,
            1113,
            3582,
            1316,
            1113,
            11491,
            2032,
            10598,
            19141,
            2032,
            10598,
            1891,
            2032,
            1113,
            2195,
            8474,
            1113,
            14066,
            2032,
            10598,
            1891,
            2032,
            1113,
            15064,
            1316,
            1113,
            2008,
            4253,
            2032,
            29473,
            29508,
            11549,
            1113,
            11661,
            2032,
            8135,
            19141,
            3010,
            1743,
            10925,
            7,
            3,
            2507,
            7585,
            29491,
            781,
            781,
            3092,
            1991,
            1065,
            6233,
            29572,
            4,
            5,
            1501,
            7567,
            1629,
            2032,
            1113,
            1295,
            29498,
            1537,
            1991,
            1316,
            1113,
            17452,
            2032,
            10598,
            19141,
            2032,
            1113,
            4684,
            1046,
            1316,
            1113,
            14066,
            2032,
            29473,
            29508,
            1743,
            29561,
            2,
            8,
            1501,
            7567,
            1629,
            2032,
            1113,
            1295,
            29498,
            1537,
            1991,
            1316,
            1113,
            4557,
            2032,
            10598,
            7891,
            2032,
            29473,
            29518,
            29508,
            29491,
            29550,
            1743,
            29561,
            9,
            29473,
            29518,
            29508,
            29491,
            29550,
            11950,
            29491,
            2,
        ],
        [(89, 118), (143, 151)],
    ),
    "v3": (
        PINNED_TOOL_CONVERSATION,
        [
            1,
            6,
            1501,
            7567,
            1891,
            2032,
            1113,
            3396,
            1316,
            1113,
            3396,
            2032,
            10598,
            1629,
            2032,
            1113,
            1295,
            29498,
            1537,
            1991,
            1316,
            1113,
            7286,
            2032,
            1113,
            3092,
            1991,
            1065,
            1032,
            3758,
            1316,
            1113,
            12206,
            2032,
            10598,
            1891,
            2032,
            1113,
            3582,
            1316,
            1113,
            11491,
            2032,
            10598,
            19141,
            2032,
            10598,
            1891,
            2032,
            1113,
            2195,
            8474,
            1113,
            14066,
            2032,
            10598,
            1891,
            2032,
            1113,
            15064,
            1316,
            1113,
            2008,
            4253,
            2032,
            29473,
            29508,
            11549,
            1113,
            11661,
            2032,
            8135,
            19141,
            3010,
            1743,
            10925,
            7,
            3,
            2507,
            7585,
            29491,
            781,
            781,
            3092,
            1991,
            1065,
            6233,
            29572,
            4,
            5,
            1501,
            7567,
            1629,
            2032,
            1113,
            1295,
            29498,
            1537,
            1991,
            1316,
            1113,
            17452,
            2032,
            10598,
            19141,
            2032,
            1113,
            4684,
            1046,
            1316,
            1113,
            14066,
            2032,
            29473,
            29508,
            1649,
            1113,
            1081,
            2032,
            1113,
            3613,
            29502,
            29502,
            29502,
            29502,
            29508,
            29507,
            10925,
            2,
            8,
            10598,
            4557,
            2032,
            10598,
            7891,
            2032,
            29473,
            29518,
            29508,
            29491,
            29550,
            1649,
            1113,
            3613,
            29498,
            1081,
            2032,
            1113,
            3613,
            29502,
            29502,
            29502,
            29502,
            29508,
            18163,
            9,
            29473,
            29518,
            29508,
            29491,
            29550,
            11950,
            29491,
            2,
        ],
        [(89, 129), (156, 164)],
    ),
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_pinned_ids(fmt: str) -> None:
    """A small conversation per format, ids written out: a regression here is obvious at a glance."""
    conversation, ids, target_spans = PINNED[fmt]
    mask = [any(s <= i < e for s, e in target_spans) for i in range(len(ids))]
    ref = reference_full(conversation, fmt)
    assert (ref.ids, ref.mask) == (ids, mask), "mistral-common itself no longer gives the pinned ids"
    enc = tokenizer(fmt).encode_chat(conversation["messages"], conversation.get("tools"), format=fmt)
    assert list(enc.ids) == ids, describe(fmt, ids, list(enc.ids))
    assert list(enc.mask) == mask
