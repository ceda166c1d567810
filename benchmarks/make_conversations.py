#!/usr/bin/env python3
"""Seeded fine-tuning conversations for the chat benchmarks, as JSONL, and their plain-text twin.

Each line of the chat file is ``{"messages": [...], "tools": [...]}`` in mistral-common's message
shape (docs: /work/notes/chat-api.md), valid for ``MistralTokenizer.encode_chat_completion`` in
``ValidationMode.finetuning``:

- ``--format v3``: a system prompt in ~35% of the conversations, 1 to 10 user/assistant turns
  (user messages 10-300 words, assistant replies 50-800 words, the last message always an
  assistant reply), ~20% of the conversations with 1-5 tools, of which 1-3 turns have an
  assistant message with 1-3 tool calls (ids of 9 letters and digits, arguments as a JSON string
  or an object), one tool result per call (``tool_call_id``, ``name``) and then the reply. A few
  assistant messages carry a finetuning ``weight`` (0 or 1), a few user messages are lists of
  text chunks, a few assistant replies end with a space or a newline.
- ``--format v1``: the same conversations without tools (the tool turns are left out: v1 has no
  tool calls), ``"tools": []``.

The text is real prose: paragraphs of the English corpus (``$BPETOK_CORPORA/en.jsonl``, by default
``/tmp/bpetok-corpora/en.jsonl``, the Linux kernel documentation, built by ``python3
../shared/corpora/build.py /tmp/bpetok-corpora --sets en --install``), prose paragraphs unwrapped
and literal blocks kept as code. Without the corpus (or with ``--synthetic``) a seeded synthetic
word generator stands in and a note says so. The same seed and corpus give the same bytes.

The plain-text twin (``--plain``) holds, for each conversation, one ``{"text": ...}`` line with the
text that the chat encoding tokenizes: the tools' JSON, every message's content, the tool calls'
JSON and the tool results, joined by blank lines. The twin has the same conversations' text (the
same UTF-8 bytes of content, to within the separators); its JSONL is smaller than the chat JSONL by
the JSON keys. ``bench_chat.py`` packs both to compare ``bpetok pack --chat`` with plain ``pack``.

    python3 benchmarks/make_conversations.py --format v3 -n 3000 -o /tmp/chat-v3.jsonl
    python3 benchmarks/make_conversations.py --format v1 -o /tmp/chat-v1.jsonl --plain /tmp/plain-v1.jsonl
    python3 benchmarks/make_conversations.py -n 200 -o /tmp/c.jsonl --validate /tmp/m/mistral.model.v3
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import random
import re
import string
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

DEFAULT_CORPORA = "/tmp/bpetok-corpora"
ID_CHARS = string.ascii_letters + string.digits

SYSTEM_PROMPTS = [
    "You are a helpful assistant.",
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while "
    "being safe. If a question does not make any sense, or is not factually coherent, explain why "
    "instead of answering something not correct. If you don't know the answer to a question, please "
    "don't share false information.",
    "You are an expert Linux kernel developer. Answer precisely, cite the relevant documentation, and "
    "show code when it helps.",
    "You are a technical writer. Rewrite and explain documentation so that a new contributor can follow "
    "it. Prefer short paragraphs and concrete examples.",
    "Always assist with care, respect, and truth. Respond with utmost utility yet securely. Avoid "
    "harmful, unethical, prejudiced, or negative content. Ensure replies promote fairness and "
    "positivity.",
    "You are a support engineer for an embedded Linux distribution. Users ask about drivers, "
    "configuration options and debugging. Ask for the kernel version when it matters.",
    "You are a concise assistant. Keep answers under five paragraphs unless the user asks for more detail.",
    "Tu es un assistant serviable. Réponds en anglais sauf si l'utilisateur écrit dans une autre langue.",
]

USER_OPENERS = [
    "Can you explain this part of the documentation to me?\n\n",
    "I'm reading the kernel docs and I don't understand the following:\n\n",
    "Summarize this for me:\n\n",
    "What does this mean in practice?\n\n",
    "Here is what I found so far:\n\n",
    "",
    "",
    "",
    "Quick question. ",
    "Could you rewrite the following so that it is easier to read?\n\n",
]
USER_CLOSERS = [
    "",
    "",
    "",
    "\n\nWhat am I missing?",
    "\n\nCan you give me an example?",
    "\n\nIs this still accurate for recent kernels?",
    " Thanks!",
    "\n\nPlease keep it short.",
    "\n\nHow would I test this?",
]
ASSISTANT_OPENERS = [
    "",
    "",
    "",
    "Sure. ",
    "Good question. ",
    "In short: ",
    "Here is an explanation.\n\n",
    "Let me break this down.\n\n",
]

CITIES = ["Paris", "Berlin", "Tokyo", "São Paulo", "Nairobi", "Toronto", "Zürich", "Kraków", "Austin", "Lyon"]
TICKERS = ["AAPL", "MSFT", "NVDA", "GOOG", "AMZN", "TSLA", "ASML", "SAP", "MC.PA", "7203.T"]
CURRENCIES = ["EUR", "USD", "JPY", "GBP", "CHF", "BRL", "KES", "CAD", "PLN"]
LANGUAGES = ["French", "German", "Spanish", "Japanese", "Italian", "Portuguese"]
PACKAGES = ["linux-doc", "busybox", "systemd", "util-linux", "iproute2", "ethtool", "perf", "bpftool"]
DATABASES = ["analytics", "inventory", "crm", "telemetry"]

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string", "description": "The city and country, e.g. Paris, France"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["location"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search_documentation",
            "description": "Full-text search of the Linux kernel documentation. Returns the best matching "
            "sections with a snippet of each.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "Keywords or a question"},
                    "max_results": {"type": "integer", "minimum": 1, "maximum": 10},
                },
                "required": ["query"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "run_sql_query",
            "description": "Run a read-only SQL query and return the rows as JSON",
            "parameters": {
                "type": "object",
                "properties": {
                    "database": {"type": "string", "enum": DATABASES},
                    "query": {"type": "string"},
                },
                "required": ["database", "query"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_stock_price",
            "description": "Get the closing price of a stock",
            "parameters": {
                "type": "object",
                "properties": {
                    "ticker": {"type": "string"},
                    "date": {"type": "string", "description": "YYYY-MM-DD; today when omitted"},
                },
                "required": ["ticker"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "send_email",
            "description": "Send an email on behalf of the user",
            "parameters": {
                "type": "object",
                "properties": {
                    "to": {"type": "array", "items": {"type": "string"}},
                    "subject": {"type": "string"},
                    "body": {"type": "string"},
                },
                "required": ["to", "subject", "body"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "convert_currency",
            "description": "Convert an amount between two currencies at today's rate",
            "parameters": {
                "type": "object",
                "properties": {
                    "amount": {"type": "number"},
                    "from_currency": {"type": "string", "description": "ISO 4217 code"},
                    "to_currency": {"type": "string", "description": "ISO 4217 code"},
                },
                "required": ["amount", "from_currency", "to_currency"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "lookup_package",
            "description": "Look up a Debian package: version, size and description",
            "parameters": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "suite": {"type": "string", "default": "stable"}},
                "required": ["name"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a text file from the user's workspace",
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "max_bytes": {"type": "integer", "minimum": 1},
                },
                "required": ["path"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "translate_text",
            "description": "Translate a text into another language",
            "parameters": {
                "type": "object",
                "properties": {"text": {"type": "string"}, "target_language": {"type": "string"}},
                "required": ["text", "target_language"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "calculate",
            "description": "Evaluate an arithmetic expression",
            "parameters": {
                "type": "object",
                "properties": {"expression": {"type": "string"}},
                "required": ["expression"],
            },
        },
    },
]


# ---- text source: corpus paragraphs, or synthetic ---------------------------------------------------


class Text:
    """Paragraphs in document order (``docs``: list of lists of (kind, text), kind "prose" or "code")."""

    def __init__(self, docs: list[list[tuple[str, str]]], source: str) -> None:
        self.docs = [d for d in docs if sum(k == "prose" for k, _ in d) >= 2]
        self.source = source
        self.words = [w for d in self.docs[:200] for k, p in d if k == "prose" for w in p.split()[:50]]
        self.code = [p for d in self.docs for k, p in d if k == "code"]

    def words_of(self, rng: random.Random, n: int, code_share: float = 0.0) -> str:
        """At least ``n`` words (at most 10% more) of consecutive paragraphs of one document (more
        documents if needed); with ``code_share``, up to two of the document's literal blocks as
        fenced code, after some prose."""
        out: list[str] = []
        count = blocks = 0
        while count < n:
            doc = rng.choice(self.docs)
            i = rng.randrange(len(doc))
            while i < len(doc) and count < n:
                kind, para = doc[i]
                i += 1
                if kind == "code":
                    if out and blocks < 2 and rng.random() < code_share and count + len(para.split()) < n:
                        out.append("```\n" + para + "\n```")
                        count += len(para.split())
                        blocks += 1
                    continue
                words = para.split()
                if count + len(words) > n + n // 10:
                    para = truncate(para, n - count, n // 10)
                    words = para.split()
                out.append(para)
                count += len(words)
        return "\n\n".join(out)


def truncate(para: str, n: int, slack: int) -> str:
    """The first sentences of ``para`` with at most ``n + slack`` words (or its first ``n`` words,
    closed with a full stop, when its first sentence is longer)."""
    out: list[str] = []
    count = 0
    for sentence in re.split(r"(?<=[.!?])\s+", para):
        k = len(sentence.split())
        if count + k > n + slack:
            break
        out.append(sentence)
        count += k
    if out:
        return " ".join(out)
    return " ".join(para.split()[:n]).rstrip(",;:") + "."


HEADING = re.compile(r"^\s*([=\-~^*#+`'\"])\1{2,}\s*$")


def corpus_text(path: Path, limit_docs: int | None = None) -> Text:
    docs = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f):
            if limit_docs is not None and n >= limit_docs:
                break
            text = json.loads(line)["text"]
            paras: list[tuple[str, str]] = []
            for block in re.split(r"\n[ \t]*\n", text):
                lines = [ln for ln in block.split("\n") if ln.strip()]
                if not lines:
                    continue
                if all(ln.startswith((" ", "\t")) for ln in lines):
                    indent = min(len(ln) - len(ln.lstrip()) for ln in lines)
                    bullets = sum(ln.lstrip()[:2] in ("- ", "* ") for ln in lines)
                    if 1 <= len(lines) <= 40 and bullets * 2 <= len(lines):  # not a list-table's cells
                        paras.append(("code", "\n".join(ln[indent:].rstrip() for ln in lines)))
                    continue
                if any(HEADING.match(ln) for ln in lines) or lines[0].lstrip().startswith(
                    ("..", ":", "|", "+-")
                ):
                    continue
                if any(ln.lstrip()[:2] in ("- ", "* ", "#.") for ln in lines):
                    para = "\n".join(ln.rstrip() for ln in lines)  # a list keeps its lines
                else:
                    para = " ".join(ln.strip() for ln in lines)  # prose is unwrapped, as people type it
                if para.endswith("::"):
                    para = para[:-1]  # RST's literal-block marker
                letters = sum(c.isalpha() for c in para)
                if len(para.split()) >= 8 and letters >= 0.6 * len(para):
                    paras.append(("prose", para))
            docs.append(paras)
    return Text(docs, f"{path} ({len(docs)} documents)")


def synthetic_text(seed: int) -> Text:
    """Pseudo-English: Zipf-distributed words made of syllables, sentences, paragraphs, documents."""
    rng = random.Random(f"synthetic-{seed}")
    syllables = [a + b for a in "bcdfghklmnprstvwz" for b in ("a", "e", "i", "o", "u", "ou", "ea", "io")]
    common = "the of and to a in is that for it as with be on not this are by or can".split()
    vocab = common + [
        "".join(rng.choice(syllables) for _ in range(rng.choice((1, 2, 2, 3, 3, 4)))) for _ in range(20000)
    ]
    weights = [1 / (r + 1) ** 1.05 for r in range(len(vocab))]
    docs = []
    for _ in range(400):
        paras: list[tuple[str, str]] = []
        for _ in range(rng.randint(5, 40)):
            sentences = []
            for _ in range(rng.randint(2, 8)):
                words = rng.choices(vocab, weights, k=rng.randint(5, 28))
                words[0] = words[0].capitalize()
                if len(words) > 8 and rng.random() < 0.4:
                    words[rng.randrange(3, len(words) - 2)] += ","
                sentences.append(" ".join(words) + rng.choice(".....?!"))
            paras.append(("prose", " ".join(sentences)))
            if rng.random() < 0.1:
                name = rng.choice(vocab[20:])
                paras.append(("code", f"int {name}(void)\n{{\n\treturn {rng.randint(0, 99)};\n}}"))
        docs.append(paras)
    return Text(docs, "synthetic words (no corpus)")


def load_text(corpora: str | None, synthetic: bool, seed: int) -> Text:
    path = Path(corpora or os.environ.get("BPETOK_CORPORA") or DEFAULT_CORPORA) / "en.jsonl"
    if synthetic or not path.exists():
        if not synthetic:
            print(f"note: {path} not found: synthetic text instead", file=sys.stderr)
        return synthetic_text(seed)
    return corpus_text(path)


# ---- conversations ------------------------------------------------------------------------------------


def length(rng: random.Random, lo: int, hi: int, median: float) -> int:
    """A log-normal length clipped to [lo, hi]: most messages short, a long tail. The callers' ``hi``
    leaves room for ``words_of``'s 10% and the openers: users 10-300 words, assistants 50-800."""
    return max(lo, min(hi, round(math.exp(rng.gauss(math.log(median), 0.8)))))


def call_id(rng: random.Random) -> str:
    return "".join(rng.choice(ID_CHARS) for _ in range(9))


def tool_arguments(name: str, rng: random.Random, text: Text) -> dict[str, Any]:
    words = " ".join(rng.choice(text.words) for _ in range(rng.randint(2, 6))).strip(".,:;()")
    if name == "get_current_weather":
        args: dict[str, Any] = {"location": rng.choice(CITIES)}
        if rng.random() < 0.5:
            args["unit"] = rng.choice(["celsius", "fahrenheit"])
        return args
    if name == "search_documentation":
        return {"query": words, "max_results": rng.randint(1, 5)}
    if name == "run_sql_query":
        table = rng.choice(["events", "orders", "devices", "users"])
        return {
            "database": rng.choice(DATABASES),
            "query": f"SELECT id, name, created_at FROM {table}"
            f" WHERE created_at > '2024-0{rng.randint(1, 9)}-01'"
            f" ORDER BY created_at DESC LIMIT {rng.randint(5, 50)}",
        }
    if name == "get_stock_price":
        args = {"ticker": rng.choice(TICKERS)}
        if rng.random() < 0.5:
            args["date"] = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        return args
    if name == "send_email":
        return {
            "to": [f"{rng.choice(['alex', 'sam', 'kim', 'noor'])}@example.com"],
            "subject": words[:60],
            "body": text.words_of(rng, rng.randint(20, 120)),
        }
    if name == "convert_currency":
        a, b = rng.sample(CURRENCIES, 2)
        return {"amount": round(rng.uniform(1, 5000), 2), "from_currency": a, "to_currency": b}
    if name == "lookup_package":
        return {"name": rng.choice(PACKAGES)}
    if name == "read_file":
        return {"path": f"/home/user/src/{words.split()[0].lower()}.c", "max_bytes": 4096}
    if name == "translate_text":
        return {"text": text.words_of(rng, rng.randint(10, 60)), "target_language": rng.choice(LANGUAGES)}
    return {"expression": f"{rng.randint(2, 999)} * {rng.randint(2, 999)} + {rng.randint(0, 99)}"}


def tool_result(name: str, args: dict[str, Any], rng: random.Random, text: Text) -> str:
    if name == "get_current_weather":
        result: Any = {
            "location": args["location"],
            "temperature": rng.randint(-10, 35),
            "unit": args.get("unit", "celsius"),
            "conditions": rng.choice(["sunny", "cloudy", "light rain", "snow", "windy"]),
        }
    elif name == "search_documentation":
        result = [
            {
                "title": text.words_of(rng, 6).split("\n")[0][:80],
                "snippet": text.words_of(rng, rng.randint(30, 150)),
            }
            for _ in range(args["max_results"])
        ]
    elif name == "run_sql_query":
        result = {
            "rows": [
                {
                    "id": rng.randint(1, 10**6),
                    "name": rng.choice(text.words),
                    "created_at": f"2024-06-0{rng.randint(1, 9)} 12:00",
                }
                for _ in range(rng.randint(0, 8))
            ]
        }
    elif name == "get_stock_price":
        result = {"ticker": args["ticker"], "close": round(rng.uniform(10, 900), 2), "currency": "USD"}
    elif name == "send_email":
        result = {"status": "sent", "message_id": f"<{call_id(rng)}@mail.example.com>"}
    elif name == "convert_currency":
        rate = rng.uniform(0.005, 200)
        result = {"rate": round(rate, 6), "converted": round(args["amount"] * rate, 2)}
    elif name == "lookup_package":
        result = {
            "name": args["name"],
            "version": f"{rng.randint(1, 9)}.{rng.randint(0, 40)}-{rng.randint(1, 5)}",
            "installed_size_kb": rng.randint(50, 90000),
            "description": text.words_of(rng, rng.randint(15, 60)),
        }
    elif name == "read_file":
        code = rng.choice(text.code) if text.code else text.words_of(rng, 80)
        result = {"path": args["path"], "content": code}
    elif name == "translate_text":
        result = {"translation": text.words_of(rng, len(args["text"].split()))}
    else:
        result = {"result": rng.randint(4, 10**6)}
    return json.dumps(result, ensure_ascii=rng.random() < 0.5)


def conversation(index: int, seed: int, fmt: str, text: Text) -> dict[str, Any]:
    """Conversation ``index``: the same text in v1 and v3; v3 adds the tool turns of ~20% of them."""
    rng = random.Random(f"{seed}-{index}")
    trng = random.Random(f"{seed}-{index}-tools")  # tool decisions: v1 and v3 share ``rng``'s draws
    with_tools = fmt == "v3" and trng.random() < 0.20
    tools = trng.sample(TOOLS, trng.randint(1, 5)) if with_tools else []
    messages: list[dict[str, Any]] = []
    if rng.random() < 0.35:
        prompt = rng.choice(SYSTEM_PROMPTS)
        if rng.random() < 0.2:
            prompt += "\n\n" + text.words_of(rng, rng.randint(20, 80))
        messages.append({"role": "system", "content": prompt})
    turns = min(10, 1 + int(rng.expovariate(1 / 2.2)))
    tool_turns = set(trng.sample(range(turns), min(turns, trng.randint(1, 3)))) if tools else set()
    for turn in range(turns):
        user = (
            rng.choice(USER_OPENERS) + text.words_of(rng, length(rng, 10, 255, 60)) + rng.choice(USER_CLOSERS)
        )
        if rng.random() < 0.04:
            cut = user.find("\n\n")
            parts = [user[:cut], user[cut + 2 :]] if cut > 0 else [user]
            messages.append({"role": "user", "content": [{"type": "text", "text": p} for p in parts]})
        else:
            messages.append({"role": "user", "content": user})
        if turn in tool_turns:
            calls = []
            for tool in trng.choices(tools, k=trng.choice((1, 1, 1, 2, 3))):
                name = tool["function"]["name"]
                args = tool_arguments(name, trng, text)
                arguments = json.dumps(args) if trng.random() < 0.7 else args
                calls.append(
                    {
                        "id": call_id(trng),
                        "type": "function",
                        "function": {"name": name, "arguments": arguments},
                    }
                )
            messages.append({"role": "assistant", "tool_calls": calls})
            for call in calls:
                args = call["function"]["arguments"]
                args = json.loads(args) if isinstance(args, str) else args
                name = call["function"]["name"]
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": call["id"],
                        "name": name,
                        "content": tool_result(name, args, trng, text),
                    }
                )
        reply = rng.choice(ASSISTANT_OPENERS) + text.words_of(rng, length(rng, 50, 680, 220), code_share=0.1)
        if rng.random() < 0.03:
            reply += rng.choice([" ", "\n", "  ", " \n"])
        message: dict[str, Any] = {"role": "assistant", "content": reply}
        r = rng.random()
        if turn < turns - 1 and r < 0.05:
            message["weight"] = 0  # a turn not to train on
        elif r > 0.98:
            message["weight"] = 1
        messages.append(message)
    return {"messages": messages, "tools": tools}


def conversations(n: int, seed: int, fmt: str, text: Text) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield conversation(i, seed, fmt, text)


def content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n\n".join(chunk["text"] for chunk in content)


def plain_text(conv: dict[str, Any]) -> str:
    """The text a chat encoding tokenizes, without the control tokens: tools, contents, calls, results."""
    parts = []
    if conv.get("tools"):
        parts.append(json.dumps(conv["tools"]))
    for m in conv["messages"]:
        if m.get("tool_calls"):
            parts.append(json.dumps([c["function"] for c in m["tool_calls"]]))
        else:
            parts.append(content_text(m.get("content")))
    return "\n\n".join(parts)


def to_mistral_common(conv: dict[str, Any]) -> Any:
    """A mistral-common ChatCompletionRequest of ``conv`` (assistant messages with a weight become
    FinetuningAssistantMessage objects)."""
    from mistral_common.protocol.instruct.messages import FinetuningAssistantMessage
    from mistral_common.protocol.instruct.request import ChatCompletionRequest

    messages = [
        FinetuningAssistantMessage(**{k: v for k, v in m.items() if k != "role"})
        if m["role"] == "assistant" and "weight" in m
        else m
        for m in conv["messages"]
    ]
    return ChatCompletionRequest(messages=messages, tools=conv.get("tools") or None)


def validate(convs: Iterable[dict[str, Any]], model: str) -> int:
    """Encode every conversation with mistral-common (finetuning mode); the number it rejects."""
    from mistral_common.protocol.instruct.validator import ValidationMode
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    mt = MistralTokenizer.from_file(model, mode=ValidationMode.finetuning)
    bad = 0
    for i, conv in enumerate(convs):
        try:
            mt.encode_chat_completion(to_mistral_common(copy.deepcopy(conv)))
        except Exception as e:  # report every rejection: the generator must not make any
            bad += 1
            if bad <= 5:
                print(
                    f"conversation {i}: mistral-common rejects it: {type(e).__name__}: {e}", file=sys.stderr
                )
    return bad


def write(
    n: int, seed: int, fmt: str, text: Text, out: Path, plain: Path | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    convs = list(conversations(n, seed, fmt, text))
    digest = hashlib.sha256()
    chat_bytes = text_bytes = plain_bytes = 0
    with out.open("w", encoding="utf-8") as f:
        for conv in convs:
            line = json.dumps(conv, ensure_ascii=False) + "\n"
            digest.update(line.encode())
            chat_bytes += len(line.encode())
            f.write(line)
    if plain is not None:
        with plain.open("w", encoding="utf-8") as f:
            for conv in convs:
                t = plain_text(conv)
                text_bytes += len(t.encode())
                line = json.dumps({"text": t}, ensure_ascii=False) + "\n"
                plain_bytes += len(line.encode())
                f.write(line)
    stats = {
        "conversations": n,
        "format": fmt,
        "seed": seed,
        "source": text.source,
        "chat_jsonl_bytes": chat_bytes,
        "plain_jsonl_bytes": plain_bytes,
        "text_bytes": text_bytes,
        "sha256": digest.hexdigest(),
        "messages": sum(len(c["messages"]) for c in convs),
        "with_tools": sum(bool(c["tools"]) for c in convs),
        "tool_calls": sum(len(m.get("tool_calls") or []) for c in convs for m in c["messages"]),
    }
    return convs, stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--format", choices=["v1", "v3"], default="v3")
    ap.add_argument("-n", "--conversations", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", required=True, help="the chat JSONL to write")
    ap.add_argument("--plain", help="the plain-text twin to write (default: OUTPUT with .plain.jsonl)")
    ap.add_argument(
        "--corpora", help=f"directory of en.jsonl (default: $BPETOK_CORPORA or {DEFAULT_CORPORA})"
    )
    ap.add_argument("--synthetic", action="store_true", help="synthetic words even when the corpus exists")
    ap.add_argument(
        "--validate",
        metavar="MODEL",
        help="check every conversation with mistral-common (a .model.v1/.model.v3 file)",
    )
    args = ap.parse_args()
    out = Path(args.output)
    plain = (
        Path(args.plain) if args.plain else out.with_name(out.name.removesuffix(".jsonl") + ".plain.jsonl")
    )
    text = load_text(args.corpora, args.synthetic, args.seed)
    convs, stats = write(args.conversations, args.seed, args.format, text, out, plain)
    print(json.dumps(stats))
    if args.validate:
        bad = validate(convs, args.validate)
        print(
            f"mistral-common ({args.validate}, finetuning mode) rejects {bad} of {len(convs)} conversations"
        )
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
