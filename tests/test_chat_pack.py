"""``bpetok pack --chat``: conversations packed with their loss mask, checked against the
conversations themselves.

A few hundred generated conversations (system prompts, several turns, consecutive messages of one
role, ``weight`` 0 and 1, content as parts, and for v3 tools, tool calls and tool results; some
longer than ``seq_len``, so they are split with sliding-window context) are written as JSONL and
packed in several settings. Every label of the output is then recomputed from
``Tokenizer.encode_chat`` of the source conversation (the segment rule of docs/shard-format.md
AND the loss mask), on the raw ``.npy`` files and through ``ShardDataset``; every assistant target
of every conversation must be a label exactly once, and nothing else. Also: the command line
writes the bytes the API writes, on any thread count; ``encode --chat``; bad conversations;
``ShardDataset``'s checks of the loss-mask file; plain-text outputs have no mask.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import random
import string
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpetok
import numpy as np
import pytest
from bpetok import ShardDataset, collate_flattened
from bpetok.dataset import ShardFormatError
from conftest import MODEL_FILES

IGNORE = -100

# ---- conversations --------------------------------------------------------------------------

WORDS = (
    "the a of to and in is it you that he was for on are with as I his they be at one have this "
    "from or had by word but what some we can out other were all there when up use your how said "
    "an each she which do their time if will way about many then them write would like so these "
    "her long make thing see him two has look more day could go come did number sound no most "
    "people my over know water than call first who may down side been now find café naïve 日本語 "
    "テキスト über straße Ελληνικά 🙂 ✓ 42 3.14 x_1 foo() {} [] <tag> [INST] </s> <s> [TOOL_CALLS]"
).split()

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search_docs",
            "description": "",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}, "k": {"type": "integer"}},
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "calc-v2",
            "description": "Evaluate an expression, ünïcode",
            "parameters": {"type": "object", "properties": {"expr": {"type": "string"}}},
        },
    },
]


def _text(rng: random.Random, n_max: int) -> str:
    parts = []
    for _ in range(rng.randint(1, n_max)):
        parts.append(rng.choice(WORDS))
        r = rng.random()
        parts.append("\n" if r < 0.05 else "  " if r < 0.08 else " ")
    text = "".join(parts).strip()
    r = rng.random()
    if r < 0.1:
        return text + "  "  # trailing spaces: v2/v3 strip them from assistant content
    if r < 0.15:
        return " " + text
    if r < 0.2:
        return text + "\n"
    return text


def _content(rng: random.Random, n_max: int) -> Any:
    text = _text(rng, n_max)
    return [{"type": "text", "text": text}] if rng.random() < 0.1 else text


def _assistant(rng: random.Random, n_max: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": _content(rng, n_max)}
    r = rng.random()
    if r < 0.15:
        message["weight"] = 0
    elif r < 0.3:
        message["weight"] = 1
    return message


def conversation(rng: random.Random, fmt: str, long: bool) -> dict[str, Any]:
    """A conversation mistral-common accepts in ``fmt`` (fine-tuning mode)."""
    turns = rng.randint(4, 10) if long else rng.randint(1, 3)
    n_max = 40 if long else 12
    messages: list[dict[str, Any]] = []
    tools = rng.sample(TOOLS, rng.randint(1, len(TOOLS))) if fmt == "v3" and rng.random() < 0.4 else None
    if rng.random() < 0.4:
        messages.append({"role": "system", "content": _text(rng, n_max)})
    for t in range(turns):
        messages.append({"role": "user", "content": _content(rng, n_max)})
        if rng.random() < 0.1:
            messages.append({"role": "user", "content": _text(rng, n_max)})  # merged with the one before
        if tools is not None and rng.random() < 0.5:
            calls = []
            for _ in range(rng.randint(1, 2)):
                name = rng.choice(tools)["function"]["name"]
                args: dict[str, Any] = (
                    {"city": _text(rng, 3)}
                    if rng.random() < 0.5
                    else {"query": _text(rng, 4), "k": rng.randint(1, 9)}
                )
                call_id = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(9))
                arguments = args if rng.random() < 0.6 else json.dumps(args)
                calls.append(
                    {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
                )
            call_message: dict[str, Any] = {"role": "assistant", "tool_calls": calls}
            if rng.random() < 0.2:
                call_message["weight"] = 0
            messages.append(call_message)
            if t == turns - 1 and rng.random() < 0.3:
                break  # the conversation ends with the tool calls
            for call in calls:
                result: dict[str, Any] = {
                    "role": "tool",
                    "tool_call_id": call["id"],
                    "content": _text(rng, n_max),
                }
                if rng.random() < 0.5:
                    result["name"] = call["function"]["name"]
                messages.append(result)
        messages.append(_assistant(rng, n_max))
        if rng.random() < 0.1:
            messages.append(_assistant(rng, n_max))  # consecutive assistant messages
    conv: dict[str, Any] = {"messages": messages}
    if tools is not None:
        conv["tools"] = tools
    return conv


@dataclass(frozen=True)
class Corpus:
    fmt: str
    tok: bpetok.Tokenizer
    vocab: str | None  # the --vocab argument, None for the embedded vocabulary
    path: Path  # the JSONL, with a few blank lines
    conversations: list[dict[str, Any]]  # the documents, in order (blank lines are none)


def _tokenizer(fmt: str) -> tuple[bpetok.Tokenizer, str | None]:
    if fmt == "v1":
        return bpetok.Tokenizer.default(), None
    path = MODEL_FILES["v3"]
    if not path.is_file():
        pytest.skip(f"{path} is missing (../shared/vocab beside the repository)")
    return bpetok.Tokenizer.from_file(path), str(path)


def write_jsonl(path: Path, conversations: list[dict[str, Any]], rng: random.Random) -> None:
    lines = []
    for conv in conversations:
        if rng.random() < 0.03:
            lines.append(rng.choice(["", "   ", "\t"]))  # blank lines are skipped: no document
        lines.append(json.dumps(conv, ensure_ascii=rng.random() < 0.5))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


_CORPORA: dict[str, Corpus] = {}


@pytest.fixture(scope="module", params=["v1", "v3"])
def corpus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    fmt: str = request.param
    if fmt not in _CORPORA:
        tok, vocab = _tokenizer(fmt)
        rng = random.Random(f"chat-pack-{fmt}")
        conversations = [conversation(rng, fmt, long=rng.random() < 0.2) for _ in range(300)]
        path = tmp_path_factory.mktemp(f"chat-{fmt}") / "conversations.jsonl"
        write_jsonl(path, conversations, rng)
        _CORPORA[fmt] = Corpus(fmt, tok, vocab, path, conversations)
    return _CORPORA[fmt]


def encodings(corpus: Corpus, train_on: str) -> list[bpetok.ChatEncoding]:
    return [
        corpus.tok.encode_chat(c["messages"], c.get("tools"), format=corpus.fmt, train_on=train_on)
        for c in corpus.conversations
    ]


# ---- packing --------------------------------------------------------------------------------

SETTINGS: list[dict[str, Any]] = [
    {"seq_len": 64, "window": 64},  # overlap 1
    {"seq_len": 48, "window": 16, "pack_buffer": 16, "samples_per_shard": 500, "seed": 3},  # context 16
    {"seq_len": 40, "window": 0, "overlap": 7, "train_on": "all", "samples_per_shard": 400},
    {"seq_len": 96, "window": 24, "overlap": 5, "pad_id": 0, "train_on": "all", "pack_buffer": 5},
    {"seq_len": 32, "window": 8, "samples_per_shard": 700},  # context 8 of 32
]


def setting_id(setting: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in setting.items())


@dataclass(frozen=True)
class Packed:
    corpus: Corpus
    setting: dict[str, Any]
    out: Path
    result: bpetok.PackResult

    @property
    def train_on(self) -> str:
        return str(self.setting.get("train_on", "assistant"))


_PACKED: dict[tuple[str, int], Packed] = {}


def pack_setting(corpus: Corpus, index: int, factory: pytest.TempPathFactory) -> Packed:
    """``corpus`` packed with ``SETTINGS[index]`` (once per test module)."""
    key = (corpus.fmt, index)
    if key not in _PACKED:
        setting = SETTINGS[index]
        out = factory.mktemp(f"packed-{corpus.fmt}-{index}")
        result = bpetok.pack(
            [corpus.path], out, chat=corpus.fmt, tokenizer=corpus.tok, overwrite=True, **setting
        )
        _PACKED[key] = Packed(corpus, setting, out, result)
    return _PACKED[key]


@pytest.fixture(scope="module", params=range(len(SETTINGS)), ids=[setting_id(s) for s in SETTINGS])
def packed(
    corpus: Corpus, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Packed:
    return pack_setting(corpus, request.param, tmp_path_factory)


def manifest_of(out: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    return manifest


def test_the_output_verifies(packed: Packed) -> None:
    report = bpetok.verify(packed.out, tokenizer=packed.corpus.tok)
    assert report.ok, report.violations[:10]


def test_the_manifest_records_the_chat_options(packed: Packed) -> None:
    manifest = manifest_of(packed.out)
    expected = {"format": packed.corpus.fmt, "train_on": packed.train_on}
    assert manifest["options"].get("chat") == expected
    assert manifest["options"]["bos"] is False and manifest["options"]["eos"] is False
    assert ShardDataset(packed.out).chat == expected
    assert manifest["totals"]["documents"] == len(packed.corpus.conversations)
    assert [i["documents"] for i in manifest["inputs"]] == [len(packed.corpus.conversations)]
    assert manifest["shards"], "nothing was packed"
    for k, shard in enumerate(manifest["shards"]):
        assert list(shard["files"]) == ["tokens", "segments", "sample_index", "loss_mask"]
        entry = shard["files"]["loss_mask"]
        assert entry["path"] == f"shard-{k:05d}.loss_mask.npy"
        assert entry["size"] == (packed.out / entry["path"]).stat().st_size


def test_the_masks_mark_assistant_turns(corpus: Corpus) -> None:
    """A sanity check of what the packed masks mean (train_on="assistant"): each run of targets
    ends with the </s> closing an assistant turn, a </s> is a target once per turn that has weight 1
    or none (consecutive assistant messages of one weight are one turn), <s> is never a target."""
    eos = corpus.tok.eos_id()
    for n, (conv, enc) in enumerate(zip(corpus.conversations, encodings(corpus, "assistant"), strict=True)):
        turns: list[tuple[str, object]] = []
        for message in conv["messages"]:
            turn = (message["role"], message.get("weight"))
            if not (turn[0] == "assistant" and turns and turns[-1] == turn):
                turns.append(turn)
        trained_turns = sum(1 for role, weight in turns if role == "assistant" and weight != 0)
        assert not enc.mask[0], n
        mask = np.asarray(enc.mask, dtype=bool)
        ids = np.asarray(enc.ids)
        run_ends = np.flatnonzero(mask & ~np.append(mask[1:], False))  # the last token of each run
        assert (ids[run_ends] == eos).all(), n
        assert int((mask & (ids == eos)).sum()) == trained_turns, n


def test_every_label_recomputed_from_the_conversations(packed: Packed) -> None:
    corpus, setting = packed.corpus, packed.setting
    seq_len = setting["seq_len"]
    manifest = manifest_of(packed.out)
    pad_id = manifest["options"]["pad_id"]
    overlap_tokens = manifest["options"]["overlap_tokens"]
    encs = encodings(corpus, packed.train_on)
    ids = [np.asarray(e.ids, dtype=np.int64) for e in encs]
    masks = [np.asarray(e.mask, dtype=bool) for e in encs]
    assert len(encs) == len(corpus.conversations)
    for e in encs:
        assert len(e.ids) == len(e.mask) > 0
        if packed.train_on == "all":
            assert all(e.mask)
    if packed.train_on == "assistant":  # the corpus has targets and non-targets
        assert 0 < sum(int(m.sum()) for m in masks) < sum(len(m) for m in masks)
    labelled = [np.zeros(len(i), dtype=np.int64) for i in ids]  # times each position is a label
    segment_targets = [np.zeros(len(i), dtype=np.int64) for i in ids]  # by the segment rule alone
    seen_tokens = [np.zeros(len(i), dtype=np.int64) for i in ids]  # as non-context tokens
    chunks: list[list[int]] = [[] for _ in ids]  # the global sample of each chunk, in file order
    ds = ShardDataset(packed.out)
    assert ds.has_loss_mask and ds.seq_len == seq_len and len(ds) == packed.result.samples
    g = 0  # global sample index
    total_labels = 0
    for shard in manifest["shards"]:
        files = {kind: np.load(packed.out / f["path"]) for kind, f in shard["files"].items()}
        tokens, segments, index, loss_mask = (
            files["tokens"],
            files["segments"],
            files["sample_index"],
            files["loss_mask"],
        )
        assert loss_mask.dtype == np.bool_ and loss_mask.shape == tokens.shape == (shard["samples"], seq_len)
        for s in range(shard["samples"]):
            sample = ds[g]
            assert sample["input_ids"].tolist() == tokens[s].tolist()
            assert sample["loss_mask"].dtype == np.bool_
            assert sample["loss_mask"].tolist() == loss_mask[s].tolist()
            rows = segments[index[s] : index[s + 1]]
            assert sample["doc_ids"].tolist() == rows[:, 3].tolist()
            assert sample["doc_starts"].tolist() == rows[:, 4].tolist()
            expected = np.full(seq_len, IGNORE, dtype=np.int64)
            for start, length, context, doc_id, doc_start in rows.tolist():
                span = slice(start, start + length)
                if doc_id == -1:
                    assert (tokens[s, span] == pad_id).all()
                    assert not loss_mask[s, span].any(), "the loss mask is True on padding"
                    continue
                doc = slice(doc_start, doc_start + length)
                assert doc_start + length <= len(ids[doc_id]), (doc_id, doc_start, length)
                assert tokens[s, span].tolist() == ids[doc_id][doc].tolist(), (g, doc_id, doc_start)
                assert loss_mask[s, span].tolist() == masks[doc_id][doc].tolist(), (g, doc_id, doc_start)
                assert context == (0 if doc_start == 0 else overlap_tokens)
                chunks[doc_id].append(g)
                first = max(1, context)
                seen_tokens[doc_id][doc_start + context : doc_start + length] += 1
                segment_targets[doc_id][doc_start + first : doc_start + length] += 1
                for j in range(first, length):
                    p = doc_start + j
                    if masks[doc_id][p]:
                        expected[start + j] = ids[doc_id][p]
                        labelled[doc_id][p] += 1
            assert sample["labels"].tolist() == expected.tolist(), f"sample {g}"
            total_labels += int((expected != IGNORE).sum())
            g += 1
    assert g == len(ds)
    for d in range(len(ids)):
        assert seen_tokens[d].tolist() == [1] * len(ids[d]), f"document {d}: tokens lost or repeated"
        assert segment_targets[d].tolist() == [0] + [1] * (len(ids[d]) - 1), f"document {d}"
        want = masks[d].astype(np.int64)
        want[0] = 0
        assert labelled[d].tolist() == want.tolist(), f"document {d}: labels are not its targets once each"
        assert chunks[d] == sorted(chunks[d]) and len(set(chunks[d])) == len(chunks[d]), f"document {d}"
    # Long conversations were split, with context when the window asks for it.
    assert manifest["totals"]["documents_split"] > 0
    assert max(len(c) for c in chunks) >= 3
    assert manifest["totals"]["target_tokens"] == total_labels


def test_dataset_pickles_forks_and_collates(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> None:
    packed = pack_setting(corpus, 1, tmp_path_factory)
    ds = ShardDataset(packed.out)
    assert ds.num_shards > 1 and "loss_mask" in repr(ds)
    copy = pickle.loads(pickle.dumps(ds))
    assert copy.has_loss_mask and copy.chat == ds.chat
    picks = [0, 1, len(ds) // 2, len(ds) - 1]
    for i in picks:
        a, b = ds[i], copy[i]
        assert a.keys() == b.keys()
        for key in a:
            assert np.array_equal(a[key], b[key])
    with multiprocessing.get_context("fork").Pool(2) as pool:
        labels = pool.map(_labels_of, [(copy, i) for i in picks])
    assert [x.tolist() for x in labels] == [ds[i]["labels"].tolist() for i in picks]

    samples = [ds[i] for i in picks]
    batch = collate_flattened(samples)
    assert batch["labels"].tolist() == [np.concatenate([s["labels"] for s in samples]).tolist()]
    assert "loss_mask" not in batch
    dropped = collate_flattened(samples, drop_padding=True)
    keep = np.concatenate([np.repeat(s["doc_ids"] >= 0, np.diff(s["cu_seqlens"])) for s in samples])
    assert dropped["labels"].tolist() == [np.concatenate([s["labels"] for s in samples])[keep].tolist()]


def _labels_of(args: tuple[ShardDataset, int]) -> Any:
    ds, i = args
    return ds[i]["labels"]


# ---- the command line -----------------------------------------------------------------------


def bpetok_cli(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "bpetok", *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def directory_bytes(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


@pytest.mark.parametrize(("train_on", "thread_counts"), [("assistant", (1, 2)), ("all", (2,))])
def test_command_line_writes_the_api_bytes_on_any_thread_count(
    corpus: Corpus, train_on: str, thread_counts: tuple[int, ...], tmp_path: Path
) -> None:
    options = {"seq_len": 48, "window": 16, "samples_per_shard": 600}
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in options.items()]
    vocab = ["--vocab", corpus.vocab] if corpus.vocab else []
    outputs = {}
    for threads in thread_counts:
        api = tmp_path / f"api-{threads}"
        bpetok.pack(
            [str(corpus.path)],
            api,
            chat=corpus.fmt,
            train_on=train_on,
            tokenizer=corpus.tok,
            num_threads=threads,
            **options,
        )
        outputs[f"api, {threads} threads"] = directory_bytes(api)
        cli = tmp_path / f"cli-{threads}"
        chat = ["--chat", corpus.fmt, "--train-on", train_on]
        bpetok_cli(
            "pack", *chat, str(corpus.path), "-o", str(cli), *flags, f"--threads={threads}", "--quiet", *vocab
        )
        outputs[f"command line, {threads} threads"] = directory_bytes(cli)
    (first_name, first), *others = outputs.items()
    assert len(first) > 4 and any(name.endswith(".loss_mask.npy") for name in first)
    for name, other in others:
        assert other.keys() == first.keys(), (name, first_name)
        for file in other:
            assert other[file] == first[file], (name, first_name, file)


@pytest.mark.parametrize("train_on", ["assistant", "all"])
def test_encode_chat_on_the_command_line(corpus: Corpus, train_on: str, tmp_path: Path) -> None:
    out = tmp_path / "ids.jsonl"
    vocab = ["--vocab", corpus.vocab] if corpus.vocab else []
    bpetok_cli(
        "encode",
        "--chat",
        corpus.fmt,
        "--train-on",
        train_on,
        str(corpus.path),
        "-o",
        str(out),
        "--quiet",
        *vocab,
    )
    lines = out.read_text(encoding="utf-8").splitlines()
    encs = encodings(corpus, train_on)
    assert len(lines) == len(encs)
    for n, (line, enc) in enumerate(zip(lines, encs, strict=True)):
        record = json.loads(line)
        assert list(record) == ["ids", "mask"], n
        assert record["ids"] == enc.ids, n
        assert record["mask"] == [int(m) for m in enc.mask], n
        assert all(type(m) is int for m in record["mask"]), n
    batch = corpus.tok.encode_chat_batch(
        corpus.conversations, format=corpus.fmt, train_on=train_on, num_threads=2
    )
    assert batch == encs


# ---- bad conversations ----------------------------------------------------------------------

GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}

BAD: list[tuple[str, dict[str, Any], str]] = [
    (
        "v1",
        {"messages": [GOOD["messages"][0], GOOD["messages"][1], {"role": "user", "content": "x"}]},
        "message 2",
    ),
    ("v1", {"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]}, "message 1"),
    (
        "v1",
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 2}]},
        "message 1",
    ),
    ("v1", {"messages": []}, ""),
    (
        "v3",
        {
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b"},
                {"role": "user", "content": "c"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "short", "type": "function", "function": {"name": "f", "arguments": {}}}
                    ],
                },
            ]
        },
        "message 3",
    ),
]


@pytest.mark.parametrize(("fmt", "bad", "named"), BAD, ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(BAD)])
def test_a_bad_conversation_names_its_line_and_message(
    fmt: str, bad: dict[str, Any], named: str, tmp_path: Path
) -> None:
    tok, _ = _tokenizer(fmt)
    with pytest.raises(bpetok.ChatError):
        tok.encode_chat(bad["messages"], format=fmt)
    path = tmp_path / "bad.jsonl"
    good = [GOOD, {"messages": [{"role": "system", "content": "S"}, *GOOD["messages"]]}]
    path.write_text("".join(json.dumps(c) + "\n" for c in [*good, bad, GOOD, GOOD]), encoding="utf-8")
    with pytest.raises(bpetok.InputError) as info:
        bpetok.pack([path], tmp_path / "out", seq_len=16, window=8, chat=fmt, tokenizer=tok)
    err = info.value
    assert err.kind == "bad_conversation"
    assert err.line == 3 and err.file == str(path)
    assert f"{path}:3" in str(err) and named in str(err)
    assert not (tmp_path / "out" / "manifest.json").exists()

    result = bpetok.pack(
        [path],
        tmp_path / "skip",
        seq_len=16,
        window=8,
        chat=fmt,
        tokenizer=tok,
        skip_bad_records=True,
        overwrite=True,
    )
    assert result.skipped_records == 1
    manifest = manifest_of(tmp_path / "skip")
    assert [(i["documents"], i["skipped_records"]) for i in manifest["inputs"]] == [(4, 1)]
    assert bpetok.verify(tmp_path / "skip").ok
    # The documents are the good conversations in order, as if line 3 were not there.
    ds = ShardDataset(tmp_path / "skip")
    kept = [*good, GOOD, GOOD]
    encs = [tok.encode_chat(c["messages"], format=fmt) for c in kept]
    for i in range(len(ds)):
        sample = ds[i]
        for start, length, doc_id, doc_start in zip(
            sample["cu_seqlens"][:-1],
            np.diff(sample["cu_seqlens"]),
            sample["doc_ids"],
            sample["doc_starts"],
            strict=True,
        ):
            if doc_id >= 0:
                want = encs[doc_id].ids[doc_start : doc_start + length]
                assert sample["input_ids"][start : start + length].tolist() == want


# ---- ShardDataset and the loss-mask file ----------------------------------------------------


@pytest.fixture
def chat_dir(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    rng = random.Random(7)
    write_jsonl(path, [conversation(rng, "v1", long=rng.random() < 0.3) for _ in range(40)], rng)
    out = tmp_path / "chat"
    bpetok.pack([path], out, seq_len=32, window=8, samples_per_shard=20, chat="v1")
    assert len(manifest_of(out)["shards"]) >= 2
    return out


def rewrite_manifest(out: Path, change: Any) -> None:
    manifest = manifest_of(out)
    change(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def test_a_missing_or_truncated_loss_mask_is_named(chat_dir: Path) -> None:
    mask = chat_dir / "shard-00001.loss_mask.npy"
    data = mask.read_bytes()
    mask.unlink()
    with pytest.raises(FileNotFoundError, match=r"shard-00001\.loss_mask\.npy: listed in .*manifest\.json"):
        ShardDataset(chat_dir)
    mask.write_bytes(data[:-3])
    with pytest.raises(ShardFormatError, match=rf"shard-00001\.loss_mask\.npy: {len(data) - 3} bytes, but"):
        ShardDataset(chat_dir)


def test_a_loss_mask_of_the_wrong_dtype_or_shape_is_named(chat_dir: Path) -> None:
    mask = chat_dir / "shard-00000.loss_mask.npy"
    array = np.load(mask)
    samples, seq_len = array.shape
    np.save(mask, array.astype(np.uint8))  # the same size: only the header says it is not bool
    ds = ShardDataset(chat_dir)
    with pytest.raises(
        ShardFormatError,
        match=rf"shard-00000\.loss_mask\.npy: holds \|u1 \[{samples}, {seq_len}\], expected \|b1",
    ):
        ds[0]
    np.save(mask, array[:, :-1])
    size = mask.stat().st_size
    rewrite_manifest(chat_dir, lambda m: m["shards"][0]["files"]["loss_mask"].update(size=size))
    ds = ShardDataset(chat_dir)
    ds[len(ds) - 1]  # another shard reads
    with pytest.raises(
        ShardFormatError,
        match=rf"holds \|b1 \[{samples}, {seq_len - 1}\], expected \|b1 \[{samples}, {seq_len}\]",
    ):
        ds[0]


def test_every_shard_has_a_loss_mask_or_none(chat_dir: Path) -> None:
    rewrite_manifest(chat_dir, lambda m: m["shards"][1]["files"].pop("loss_mask"))
    with pytest.raises(
        ShardFormatError, match=r"shards\[0\] lists files\.loss_mask and shards\[1\] does not"
    ):
        ShardDataset(chat_dir)

    def no_masks(manifest: dict[str, Any]) -> None:
        for shard in manifest["shards"]:
            shard["files"].pop("loss_mask", None)
        manifest["options"]["chat"] = {"format": "v1", "train_on": "assistant"}

    rewrite_manifest(chat_dir, no_masks)
    with pytest.raises(ShardFormatError, match=r"options\.chat is set .* lists no files\.loss_mask"):
        ShardDataset(chat_dir)


def segment_rule_labels(out: Path) -> list[list[int]]:
    """Every sample's labels by the segment rule alone (no loss mask), from the raw files."""
    labels = []
    for shard in manifest_of(out)["shards"]:
        tokens, segments, index = (
            np.load(out / shard["files"][k]["path"]) for k in ("tokens", "segments", "sample_index")
        )
        for s in range(len(tokens)):
            row = [IGNORE] * tokens.shape[1]
            for start, length, context, doc_id, _ in segments[index[s] : index[s + 1]].tolist():
                if doc_id >= 0:
                    for p in range(start + max(1, context), start + length):
                        row[p] = int(tokens[s, p])
            labels.append(row)
    return labels


def test_labels_follow_the_mask_file(chat_dir: Path) -> None:
    """The mask in the file is what counts: all True gives the segment rule's labels, all False none."""
    rule = segment_rule_labels(chat_dir)
    ds = ShardDataset(chat_dir)
    before = [ds[i] for i in range(len(ds))]
    for i, sample in enumerate(before):
        want = np.where(sample["loss_mask"], np.array(rule[i]), IGNORE)
        assert sample["labels"].tolist() == want.tolist()
    for fill in (True, False):
        for shard in manifest_of(chat_dir)["shards"]:
            mask = chat_dir / shard["files"]["loss_mask"]["path"]
            np.save(mask, np.full(np.load(mask).shape, fill, dtype=bool))
        after = ShardDataset(chat_dir)
        for i in range(len(after)):
            sample = after[i]
            assert sample["loss_mask"].tolist() == [fill] * after.seq_len
            assert sample["labels"].tolist() == (rule[i] if fill else [IGNORE] * after.seq_len)


def test_plain_text_outputs_have_no_loss_mask(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text(
        "".join(json.dumps({"text": " ".join(WORDS[: 5 + 7 * i])}) + "\n" for i in range(30)),
        encoding="utf-8",
    )
    out = tmp_path / "plain"
    bpetok.pack([path], out, seq_len=32, window=8, samples_per_shard=10)
    manifest = manifest_of(out)
    assert "chat" not in manifest["options"]
    assert "loss_mask" not in (out / "manifest.json").read_text(encoding="utf-8")
    assert not any(name.endswith("loss_mask.npy") for name in os.listdir(out))
    for shard in manifest["shards"]:
        assert list(shard["files"]) == ["tokens", "segments", "sample_index"]
    ds = ShardDataset(out)
    assert not ds.has_loss_mask and ds.chat is None and "loss_mask" not in repr(ds)
    sample = ds[0]
    assert list(sample) == ["input_ids", "labels", "position_ids", "cu_seqlens", "doc_ids", "doc_starts"]
    assert not pickle.loads(pickle.dumps(ds)).has_loss_mask
    assert bpetok.verify(out).ok


def test_an_empty_chat_output(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n  \n", encoding="utf-8")
    out = tmp_path / "out"
    bpetok.pack([path], out, seq_len=16, window=8, chat="v1")
    ds = ShardDataset(out)
    assert len(ds) == 0 and ds.num_shards == 0
    assert ds.has_loss_mask == (ds.chat is not None)  # no shards: options.chat says
    assert bpetok.verify(out).ok
