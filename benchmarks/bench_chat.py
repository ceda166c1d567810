#!/usr/bin/env python3
"""Chat encoding: bpetok's ``encode_chat`` against mistral-common, and ``bpetok pack --chat`` against
plain ``pack`` on the same text.

Run from the repository root (the English corpus makes the text real prose; without it
``make_conversations.py`` falls back to synthetic words and says so)::

    python3 ../shared/corpora/build.py /tmp/bpetok-corpora --sets en --install   # once
    python3 benchmarks/bench_chat.py --repeat 5                   # ~3000 conversations per format, ~10 min
    python3 benchmarks/bench_chat.py --quick                      # smoke run, ~1 min
    PYTHONPATH=/path/to/build python3 benchmarks/bench_chat.py    # another build of bpetok

It needs ``mistral-common`` (``pip install -e '.[bench]'``). For each format (v1 on
``../shared/vocab/mixtral-8x7b-v0.1.model``, v3 on ``../shared/vocab/mistral-v3.model``; both are
symlinked into a temporary folder as ``NAME.model.v1`` / ``.model.v3``, since mistral-common reads
the version from the file name) it generates the conversations with ``make_conversations.py``
(seeded; ``--conversations`` of them, real prose, ~20% of v3 ones with tools) and then:

1. **Parity, before any timing**: mistral-common ``MistralTokenizer.from_file(...,
   mode=ValidationMode.finetuning).encode_chat_completion(ChatCompletionRequest(messages, tools))
   .tokens`` is the reference for the ids; the reference mask is built by the same walk over the
   normalized request as mistral-common's ``encode_instruct``, marking the tokens of each assistant
   message (after its merging of consecutive messages of the same role and weight; weight 0: none).
   bpetok's ``encode_chat`` (one at a time) and ``encode_chat_batch`` (1 and
   2 threads) must give the same ids and mask on every conversation; mismatches are counted and the
   first one is minimized (messages dropped, texts cut, as long as mistral-common still accepts it
   and bpetok still differs) and printed. The script exits with status 1 on any mismatch.
2. **Encoding throughput**, medians of ``--repeat`` interleaved runs in this process: mistral-common
   (the request built from the parsed JSON dicts inside the timing, as a caller does; also
   ``encode_chat_completion`` alone on pre-built requests), bpetok ``tok.encode_chat`` per
   conversation, ``tok.encode_chat_batch(convs, num_threads=1)`` and ``num_threads=2``; as
   conversations/s and MB/s of JSON (the JSONL lines' UTF-8 bytes; parsing the JSON is not timed for
   either). ``[x.xx]`` = process CPU time / wall time. Target: bpetok >= 50x mistral-common on one core.
3. **Packing**: ``python3 -m bpetok pack --chat FMT chat.jsonl`` against ``python3 -m bpetok pack
   plain.jsonl`` on the plain-text twin (the same conversations' text: tools, contents, tool calls,
   results; see ``make_conversations.py``), ``--seq-len 4096 --window 4096 --overwrite --threads N
   --vocab MODEL``, whole commands in subprocesses (interpreter start included; the time the command
   reports in its ``--json`` summary is printed beside it). Speed is MB of text per second, the same
   text for both, so the ratio is plain time / chat time. Target: chat pack >= 80% of plain pack.
   Skipped (and said so) when ``bpetok pack`` has no ``--chat`` option yet.

The machine is shared and noisy: read the ratios of one run, and run it again when the load average
was high. ``--json FILE`` writes every sample.
"""

from __future__ import annotations

import argparse
import copy
import gc
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_conversations as mc

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
MODELS = {"v1": SHARED / "vocab" / "mixtral-8x7b-v0.1.model", "v3": SHARED / "vocab" / "mistral-v3.model"}
ENCODE_TARGET = 50.0
PACK_TARGET = 0.80
PLAIN_CASE = "bpetok encode_batch(plain twin), num_threads=1 [t]"
HAS_CHAT = False  # set in main: whether this bpetok has Tokenizer.encode_chat


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# ---- mistral-common: the reference --------------------------------------------------------------------


def mistral_tokenizer(fmt: str, tmp: Path) -> Any:
    from mistral_common.protocol.instruct.validator import ValidationMode
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    link = tmp / f"{MODELS[fmt].stem}.model.{fmt}"
    if not link.exists():
        link.symlink_to(MODELS[fmt])
    return MistralTokenizer.from_file(str(link), mode=ValidationMode.finetuning)


def reference_ids_mask(mt: Any, conv: dict[str, Any]) -> tuple[list[int], list[bool]]:
    """mistral-common's ids, and which of them are assistant tokens: ``encode_instruct``'s walk over the
    normalized request, each message's tokens marked when it is an assistant message without weight 0."""
    from mistral_common.protocol.instruct.messages import (
        AssistantMessage,
        SystemMessage,
        ToolMessage,
        UserMessage,
    )

    req = mt._chat_completion_request_validator.validate_request(mc.to_mistral_common(conv))
    instruct = mt._instruct_request_normalizer.from_chat_completion_request(req)
    # The normalizer merges consecutive messages of the same role and weight, but builds plain
    # AssistantMessage objects: the weight of each merged assistant message is that of its group.
    weights: list[Any] = []
    previous: tuple[str, Any] | None = None
    for m in conv["messages"]:
        key = (m["role"], m.get("weight"))
        if key != previous and m["role"] == "assistant":
            weights.append(m.get("weight"))
        previous = key
    n_assistant = sum(isinstance(m, AssistantMessage) for m in instruct.messages)
    if n_assistant != len(weights):
        raise RuntimeError(f"{len(weights)} assistant groups, {n_assistant} normalized assistant messages")
    weights.reverse()
    it = mt.instruct_tokenizer
    it.validate_messages(instruct.messages)
    first_user, last_user = it.find_first_last_user(instruct)
    ids = list(it.start())
    mask = [False] * len(ids)
    for i, msg in enumerate(instruct.messages):
        target = False
        if isinstance(msg, UserMessage):
            new = it.encode_user_message(
                msg,
                instruct.available_tools,
                i == last_user,
                i == first_user,
                system_prompt=instruct.system_prompt,
                force_img_first=True,
                settings=instruct.settings,
            )[0]
        elif isinstance(msg, ToolMessage):
            new = it.encode_tool_message(msg, i < last_user)[0]
        elif isinstance(msg, AssistantMessage):
            new = it.encode_assistant_message(message=msg, is_before_last_user_message=i < last_user)
            target = weights.pop() != 0
        elif isinstance(msg, SystemMessage):
            new = it.encode_system_message(msg)[0]
        else:
            raise TypeError(f"unknown message type {type(msg)}")
        if new:
            ids.extend(new)
            mask.extend([target] * len(new))
    return ids, mask


def mc_encode_all(mt: Any, convs: list[dict[str, Any]]) -> list[list[int]]:
    return [mt.encode_chat_completion(mc.to_mistral_common(c)).tokens for c in convs]


# ---- bpetok ---------------------------------------------------------------------------------------------


def tools_arg(conv: dict[str, Any]) -> list[dict[str, Any]] | None:
    return conv.get("tools") or None


def bpetok_one(tok: Any, conv: dict[str, Any], fmt: str) -> tuple[list[int], list[bool]] | str:
    """(ids, mask), or the error bpetok raised, as text."""
    try:
        enc = tok.encode_chat(conv["messages"], tools_arg(conv), format=fmt)
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return list(enc.ids), [bool(m) for m in enc.mask]


def differs(tok: Any, mt: Any, conv: dict[str, Any], fmt: str) -> str | None:
    """Why bpetok's encoding of ``conv`` is not mistral-common's; None when it is (or when mistral-common
    rejects ``conv``: then it is no test case)."""
    try:
        ref_ids, ref_mask = reference_ids_mask(mt, conv)
    except Exception:
        return None
    got = bpetok_one(tok, conv, fmt)
    if isinstance(got, str):
        return f"bpetok raises where mistral-common accepts: {got}"
    ids, mask = got
    if ids != ref_ids:
        at = next(
            (i for i, (a, b) in enumerate(zip(ids, ref_ids, strict=False)) if a != b),
            min(len(ids), len(ref_ids)),
        )
        return f"ids differ at token {at} (bpetok {len(ids)} ids, mistral-common {len(ref_ids)})"
    if len(mask) != len(ids):
        return f"{len(mask)} mask values for {len(ids)} ids"
    if mask != ref_mask:
        at = next(i for i, (a, b) in enumerate(zip(mask, ref_mask, strict=True)) if a != b)
        return f"mask differs at token {at} (bpetok {mask[at]}, reference {ref_mask[at]})"
    return None


def minimize(tok: Any, mt: Any, conv: dict[str, Any], fmt: str) -> dict[str, Any]:
    """A smaller conversation on which bpetok still differs from mistral-common (greedy: drop messages,
    then tools, then cut each text to halves, quarters, ... while the difference persists)."""
    conv = copy.deepcopy(conv)

    def bad(c: dict[str, Any]) -> bool:
        return differs(tok, mt, c, fmt) is not None

    changed = True
    while changed:
        changed = False
        # drop a message, or a run of two or three (a user turn and its reply, a call and its result)
        for width in (3, 2, 1):
            i = 0
            while i + width <= len(conv["messages"]):
                cand = copy.deepcopy(conv)
                del cand["messages"][i : i + width]
                if cand["messages"] and bad(cand):
                    conv, changed = cand, True
                else:
                    i += 1
        for i in range(len(conv.get("tools") or [])):
            cand = copy.deepcopy(conv)
            del cand["tools"][i]
            if bad(cand):
                conv, changed = cand, True
                break
        for m in range(len(conv["messages"])):
            content = conv["messages"][m].get("content")
            if isinstance(content, str) and len(content) > 1:
                for part in (content[: len(content) // 2], content[len(content) // 2 :]):
                    cand = copy.deepcopy(conv)
                    cand["messages"][m]["content"] = part
                    if bad(cand):
                        conv, changed = cand, True
                        break
    return conv


def show_difference(tok: Any, mt: Any, conv: dict[str, Any], fmt: str) -> None:
    print(f"  minimized conversation ({fmt}): {differs(tok, mt, conv, fmt)}")
    print("    " + json.dumps(conv, ensure_ascii=False))
    ref_ids, ref_mask = reference_ids_mask(mt, conv)
    got = bpetok_one(tok, conv, fmt)
    pieces = mt.instruct_tokenizer.tokenizer
    print(f"    mistral-common: {ref_ids}")
    print(f"    reference mask: {[int(m) for m in ref_mask]}")
    print(f"    text: {pieces.decode(ref_ids, special_token_policy=_keep())!r}")
    if isinstance(got, str):
        print(f"    bpetok: {got}")
    else:
        print(f"    bpetok ids:     {got[0]}")
        print(f"    bpetok mask:    {[int(m) for m in got[1]]}")


def _keep() -> Any:
    from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy

    return SpecialTokenPolicy.KEEP


def references(
    mt: Any, convs: list[dict[str, Any]]
) -> tuple[list[tuple[list[int], list[bool]] | None], dict[str, Any]]:
    """Per conversation (encode_chat_completion's ids, the reference walk's mask), None where
    mistral-common rejects it; and a report (rejections, whether the walk's ids are encode's)."""
    refs: list[tuple[list[int], list[bool]] | None] = []
    rejected = walk_differs = 0
    for c in convs:
        try:
            ids = mt.encode_chat_completion(mc.to_mistral_common(c)).tokens
        except Exception as e:
            rejected += 1
            refs.append(None)
            if rejected <= 3:
                print(f"  mistral-common rejects a generated conversation: {type(e).__name__}: {e}")
            continue
        walk_ids, mask = reference_ids_mask(mt, c)
        walk_differs += walk_ids != ids
        refs.append((ids, mask))
    print(
        f"  mistral-common accepts {len(convs) - rejected} of {len(convs)} conversations (finetuning mode);"
        f" the reference walk gives encode_chat_completion's ids on {len(convs) - rejected - walk_differs}"
    )
    if walk_differs:
        print(
            "  WARNING: the reference walk's ids differ from encode_chat_completion's: the mask check is void"
        )
    return refs, {"rejected_by_mistral_common": rejected, "walk_differs": walk_differs}


def parity(
    tok: Any,
    mt: Any,
    convs: list[dict[str, Any]],
    refs: list[tuple[list[int], list[bool]] | None],
    fmt: str,
    threads: list[int],
) -> tuple[int, dict[str, Any]]:
    """bpetok's ids against encode_chat_completion's and its mask against the walk's, on every
    conversation mistral-common accepts; (mismatches, report); the first mismatch minimized."""
    modes: dict[str, Callable[[], list[Any]]] = {
        "encode_chat": lambda: [bpetok_one(tok, c, fmt) for c in convs],
    }
    for n in threads:
        modes[f"encode_chat_batch t{n}"] = lambda n=n: batch_results(tok, convs, fmt, n)
    first_bad: dict[str, Any] | None = None
    total = 0
    report: dict[str, Any] = {}
    checked = sum(r is not None for r in refs)
    for mode, run in modes.items():
        got = run()
        ids_bad = mask_bad = raised = 0
        for i, (g, r) in enumerate(zip(got, refs, strict=True)):
            if r is None:
                continue
            if isinstance(g, str):
                raised += 1
            elif g[0] != r[0]:
                ids_bad += 1
            elif g[1] != r[1]:
                mask_bad += 1
            else:
                continue
            if first_bad is None:
                first_bad = convs[i]
        n_bad = ids_bad + mask_bad + raised
        total += n_bad
        report[mode] = {"ids_mismatch": ids_bad, "mask_mismatch": mask_bad, "bpetok_raised": raised}
        print(
            f"  {mode:22} ids differ on {ids_bad}, mask differs on {mask_bad}, bpetok raises on {raised}"
            f" of {checked} conversations"
        )
    if first_bad is not None:
        log("  minimizing the first mismatch")
        small = minimize(tok, mt, first_bad, fmt)
        report["minimized"] = small
        show_difference(tok, mt, small, fmt)
    return total, report


def batch_results(tok: Any, convs: list[dict[str, Any]], fmt: str, n: int) -> list[Any]:
    try:
        encs = tok.encode_chat_batch(convs, format=fmt, num_threads=n)
    except Exception as e:  # one bad conversation fails the batch: fall back to one by one to find it
        print(f"  encode_chat_batch(num_threads={n}) raises {type(e).__name__}: {e}")
        return [bpetok_one(tok, c, fmt) for c in convs]
    return [(list(e.ids), [bool(m) for m in e.mask]) for e in encs]


# ---- timing ---------------------------------------------------------------------------------------------


def timed_cases(cases: dict[str, Callable[[], object]], repeat: int) -> dict[str, dict[str, list[float]]]:
    """Each case run ``repeat`` times, interleaved: wall and process CPU seconds of each run."""
    out: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in cases}
    for r in range(repeat):
        for name, case in cases.items():
            gc.collect()
            c0, t0 = time.process_time(), time.perf_counter()
            result = case()
            del result  # freeing the results is part of a caller's cost
            t1, c1 = time.perf_counter(), time.process_time()
            out[name]["wall"].append(t1 - t0)
            out[name]["cpu"].append(c1 - c0)
        log(f"    repeat {r + 1}/{repeat} done")
    return out


def med(samples: dict[str, list[float]]) -> tuple[float, float]:
    """(median wall seconds, CPU/wall of the median run)."""
    walls = samples["wall"]
    m = statistics.median(walls)
    i = min(range(len(walls)), key=lambda k: abs(walls[k] - m))
    return m, samples["cpu"][i] / walls[i] if walls[i] else 0.0


def run_cli(argv: list[str]) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bpetok", *argv], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"bpetok {' '.join(argv)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"wall": wall, "cpu": cpu, "inside": float(summary.get("seconds", 0.0)), "summary": summary}


def pack_has_chat() -> bool:
    out = subprocess.run([sys.executable, "-m", "bpetok", "pack", "--help"], capture_output=True, text=True)
    return "--chat" in out.stdout


# ---- one format ----------------------------------------------------------------------------------------


def bench_format(
    fmt: str, args: argparse.Namespace, text: mc.Text, tmp: Path, results: dict[str, Any]
) -> tuple[int, list[tuple[str, str, float, bool]]]:
    import bpetok

    chat_path, plain_path = tmp / f"chat-{fmt}.jsonl", tmp / f"plain-{fmt}.jsonl"
    convs, stats = mc.write(args.conversations, args.seed, fmt, text, chat_path, plain_path)
    lines = chat_path.read_bytes().splitlines()
    mb = sum(len(x) for x in lines) / 1e6
    text_mb = stats["text_bytes"] / 1e6
    print(
        f"\n== {fmt}: {len(convs)} conversations, {stats['messages']} messages,"
        f" {stats['with_tools']} with tools"
        f" ({stats['tool_calls']} tool calls); {mb:.2f} MB of chat JSONL, {text_mb:.2f} MB of text,"
        f" plain twin {stats['plain_jsonl_bytes'] / 1e6:.2f} MB of JSONL; sha256 {stats['sha256'][:16]}"
    )
    print(f"   vocab {MODELS[fmt]}")
    fr: dict[str, Any] = {"data": stats, "json_mb": mb}
    results[fmt] = fr
    mt = mistral_tokenizer(fmt, tmp)
    tok = bpetok.Tokenizer.from_file(str(MODELS[fmt])) if HAS_CHAT else None

    print("PARITY  bpetok vs mistral-common on every conversation, before any timing: ids against")
    print(
        "        encode_chat_completion's, the mask against the reference walk"
        " (assistant tokens; weight 0: none)"
    )
    refs, report = references(mt, convs)
    n_tokens = sum(len(r[0]) for r in refs if r)
    n_targets = sum(sum(r[1]) for r in refs if r)
    print(
        f"  {n_tokens:,} tokens in all ({mb * 1e6 / max(n_tokens, 1):.2f} bytes of JSON per token),"
        f" {n_targets / max(n_tokens, 1):.1%} of them targets"
    )
    mismatches = 0
    if tok is not None:
        mismatches, more = parity(tok, mt, convs, refs, fmt, args.threads)
        report.update(more)
    fr["parity"] = report
    fr["tokens"] = n_tokens

    # ---- encoding throughput
    log(f"  timing {fmt} encoding, {args.repeat} repeats")
    requests = [mc.to_mistral_common(c) for c in convs]
    cases: dict[str, Callable[[], object]] = {
        "mistral-common": lambda: mc_encode_all(mt, convs),
        "mistral-common, pre-built requests [p]": lambda: [
            mt.encode_chat_completion(r).tokens for r in requests
        ],
    }
    if tok is not None:
        cases["bpetok encode_chat, one at a time"] = lambda: [
            tok.encode_chat(c["messages"], tools_arg(c), format=fmt) for c in convs
        ]
    if tok is not None:
        plain = [json.loads(line)["text"] for line in plain_path.open(encoding="utf-8")]
        cases[PLAIN_CASE] = lambda: tok.encode_batch(plain, num_threads=1)
    for n in args.threads if tok is not None else []:
        cases[f"bpetok encode_chat_batch, num_threads={n}"] = lambda n=n: tok.encode_chat_batch(
            convs, format=fmt, num_threads=n
        )
    t = timed_cases(cases, args.repeat)
    fr["encode"] = t
    print(
        f"\nENCODE ({fmt})  median of {args.repeat}; MB = 10^6 bytes of JSONL; [x.xx] = CPU time / wall time"
    )
    print(f"{'engine / call':50} {'conv/s':>7} {'MB/s':>7} {'vs mistral-common':>18} {'by CPU [c]':>11}")
    print("-" * 97)
    base, _ = med(t["mistral-common"])
    base_cpu = statistics.median(t["mistral-common"]["cpu"])
    rows = []
    for name, samples in t.items():
        s, ratio_cpu = med(samples)
        x = base / s
        rows.append((name, x))
        by_cpu = base_cpu / statistics.median(samples["cpu"])
        print(f"{name:50} {len(convs) / s:7.0f} {mb / s:7.2f} {x:11.2f}x [{ratio_cpu:.2f}] {by_cpu:10.2f}x")
    targets: list[tuple[str, str, float, bool]] = []
    for name, x in rows:
        if name.startswith("bpetok encode_chat") and ("one at a time" in name or "num_threads=1" in name):
            targets.append((fmt, f"{name} / mistral-common (1 core)", x, x >= ENCODE_TARGET))
    for n in args.threads if tok is not None else []:
        if n > 1 and 1 in args.threads:
            s1, _ = med(t["bpetok encode_chat_batch, num_threads=1"])
            sn, _ = med(t[f"bpetok encode_chat_batch, num_threads={n}"])
            print(f"  encode_chat_batch {n} threads / 1 thread: {s1 / sn:.2f}x")
    print("  [p] ChatCompletionRequest objects built before the timing: mistral-common's encoding alone")
    print("  [c] the same ratio by process CPU time (median CPU seconds): a cross-check on a busy machine")
    if tok is not None:
        s1, _ = med(t["bpetok encode_chat_batch, num_threads=1"])
        sp, _ = med(t[PLAIN_CASE])
        print(
            "  [t] the plain-text twin's texts (the same conversations' text, no JSON, no control tokens),"
            f" encoded as documents: encode_chat_batch runs at {sp / s1:.0%} of its speed (1 thread)"
        )

    # ---- pack
    if args.skip_pack or tok is None:
        return mismatches, targets
    if not pack_has_chat():
        print(f"\nPACK ({fmt}): skipped: this bpetok's `pack` has no --chat option yet")
        fr["pack"] = "no --chat"
        return mismatches, targets
    log(f"  timing {fmt} pack, {args.repeat} repeats")
    common = ["--seq-len", "4096", "--window", "4096", "--overwrite", "--quiet", "--json"]
    common += ["--vocab", str(MODELS[fmt])]
    pcases: dict[str, list[str]] = {}
    for n in args.threads:
        pcases[f"chat t{n}"] = [
            "pack",
            "--chat",
            fmt,
            str(chat_path),
            "-o",
            str(tmp / "out-chat"),
            *common,
            "--threads",
            str(n),
        ]
        pcases[f"plain t{n}"] = [
            "pack",
            str(plain_path),
            "-o",
            str(tmp / "out-plain"),
            *common,
            "--threads",
            str(n),
        ]
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in pcases}
    try:
        for _ in range(args.repeat):
            for name, argv in pcases.items():
                runs[name].append(run_cli(argv))
    except RuntimeError as e:
        print(f"\nPACK ({fmt}): failed: {e}")
        fr["pack"] = f"failed: {e}"
        return mismatches + 1, targets
    fr["pack"] = {
        k: [{kk: vv for kk, vv in r.items() if kk != "summary"} for r in v] for k, v in runs.items()
    }
    print(
        f"\nPACK ({fmt})  whole commands, median of {args.repeat}; MB/s of text"
        f" ({text_mb:.2f} MB, the same for both)"
        f"; inside = the time the command's --json summary reports"
    )
    print(
        f"{'command':36} {'wall s':>7} {'MB/s':>7} {'inside s':>9} {'MB/s':>7} {'CPU/wall':>9} {'tokens':>11}"
    )
    print("-" * 92)
    summ: dict[str, tuple[float, float]] = {}
    for name, rs in runs.items():
        wall = statistics.median(r["wall"] for r in rs)
        inside = statistics.median(r["inside"] for r in rs)
        cpu = statistics.median(r["cpu"] / r["wall"] for r in rs)
        toks = rs[-1]["summary"].get("tokens", 0)
        summ[name] = (wall, inside)
        what = "--chat " + fmt if name.startswith("chat") else "(plain twin)"
        label = f"bpetok pack {what} --threads {name[-1]}"
        print(
            f"{label:36} {wall:7.2f} {text_mb / wall:7.1f} {inside:9.2f} {text_mb / max(inside, 1e-9):7.1f}"
            f" {cpu:9.2f} {toks:11,}"
        )
    chat_tokens = runs[f"chat t{args.threads[0]}"][-1]["summary"].get("tokens")
    print(
        f"  chat pack tokens {chat_tokens:,} vs mistral-common's {n_tokens:,} for the same conversations"
        + ("" if chat_tokens == n_tokens else "  (DIFFERENT: padding or bos/eos counted? check)")
    )
    pack_bad = pack_targets(tmp / "out-chat", n_targets, fr)
    for n in args.threads:
        wc, ic = summ[f"chat t{n}"]
        wp, ip = summ[f"plain t{n}"]
        print(f"  chat / plain speed, {n} thread(s): {wp / wc:.1%} whole command, {ip / ic:.1%} inside")
        targets.append(
            (fmt, f"pack --chat / plain pack, {n} thread(s), whole command", wp / wc, wp / wc >= PACK_TARGET)
        )
        targets.append(
            (fmt, f"pack --chat / plain pack, {n} thread(s), inside [i]", ip / ic, ip / ic >= PACK_TARGET)
        )
    return mismatches + pack_bad, targets


def pack_targets(out: Path, n_targets: int, fr: dict[str, Any]) -> int:
    """The chat pack output's targets, three ways: the manifest's ``target_tokens``, the labels that
    ``bpetok.ShardDataset`` gives (not -100) and the reference mask's count (context tokens, the
    repeats at the start of a continuation chunk, are never targets, and BOS never is, so the three
    must be equal). Returns 1 if they differ."""
    import bpetok
    import numpy as np

    manifest = json.loads((out / "manifest.json").read_text())
    in_manifest = manifest["totals"].get("target_tokens")
    ds = bpetok.ShardDataset(str(out))
    in_labels = sum(int((np.asarray(ds[i]["labels"]) != -100).sum()) for i in range(len(ds)))
    in_files = sum(int(np.load(p).sum()) for p in sorted(out.glob("*.loss_mask.npy")))
    verified = bpetok.verify(str(out))
    fr["pack_targets"] = {"manifest": in_manifest, "labels": in_labels, "loss_mask_files": in_files}
    fr["pack_verify"] = bool(verified.ok)
    print(f"  bpetok verify of the chat pack output: {'ok' if verified.ok else f'FAILS: {verified}'}")
    ok = in_manifest == in_labels == n_targets and bool(verified.ok)
    print(
        f"  chat pack targets: manifest {in_manifest:,}, ShardDataset labels != -100 {in_labels:,},"
        f" reference mask {n_targets:,}: {'equal' if ok else 'DIFFERENT (a bug)'}"
        f" (loss_mask files hold {in_files:,} True, context tokens included)"
    )
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--corpora", help=f"directory of en.jsonl (default: $BPETOK_CORPORA or {mc.DEFAULT_CORPORA})"
    )
    ap.add_argument("--synthetic", action="store_true", help="synthetic words even when the corpus exists")
    ap.add_argument("-n", "--conversations", type=int, default=3000, help="conversations per format")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--formats", default="v1,v3")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per figure (median)")
    ap.add_argument("--threads", default="1,2", help="bpetok thread counts (comma-separated; 1 first)")
    ap.add_argument("--skip-pack", action="store_true")
    ap.add_argument("--quick", action="store_true", help="smoke run: 200 conversations, 2 repeats")
    ap.add_argument("--work", help="keep the generated files and outputs here (default: a temporary folder)")
    ap.add_argument("--json", help="also write every figure, with all samples, to this file")
    args = ap.parse_args()
    if args.quick:
        args.conversations, args.repeat = min(args.conversations, 200), min(args.repeat, 2)
    args.threads = [int(x) for x in args.threads.split(",")]

    import bpetok

    global HAS_CHAT
    HAS_CHAT = hasattr(bpetok.Tokenizer, "encode_chat")
    print("bpetok chat benchmark")
    print(
        f"  bpetok {bpetok.__version__} from {Path(bpetok.__file__).parent}; mistral-common"
        f" {version('mistral-common')}, sentencepiece {version('sentencepiece')};"
        f" Python {platform.python_version()}"
    )
    print(
        f"  {cpu_model()}; {os.cpu_count()} CPUs, {len(os.sched_getaffinity(0))} usable;"
        f" load average at start {os.getloadavg()[0]:.2f}"
    )
    if not HAS_CHAT:
        print("  WARNING: this bpetok has no Tokenizer.encode_chat yet: only the mistral-common side is run")
    text = mc.load_text(args.corpora, args.synthetic, args.seed)
    print(f"  text: {text.source}; seed {args.seed}; medians of {args.repeat} runs")
    results: dict[str, Any] = {"args": {k: v for k, v in vars(args).items()}}
    mismatches = 0
    targets: list[tuple[str, str, float, bool]] = []
    with tempfile.TemporaryDirectory(prefix="bench_chat.") as tmpdir:
        tmp = Path(args.work) if args.work else Path(tmpdir)
        tmp.mkdir(parents=True, exist_ok=True)
        for fmt in args.formats.split(","):
            m, t = bench_format(fmt, args, text, tmp, results)
            mismatches += m
            targets += t
    print(f"\nTARGETS: {sum(ok for *_, ok in targets)} of {len(targets)} met")
    for fmt, name, x, ok in targets:
        goal = f">= {ENCODE_TARGET:.0f}x" if "mistral-common" in name else f">= {PACK_TARGET:.0%}"
        shown = f"{x:.2f}x" if "mistral-common" in name else f"{x:.1%}"
        print(f"  {'meets ' if ok else 'MISSES'} {fmt} {name}: {shown} (target {goal})")
    if any("[i]" in name for _, name, _, _ in targets):
        print("  [i] the time the pack command reports itself (--json), without interpreter start and exit")
    if HAS_CHAT:
        what = "OK" if mismatches == 0 else f"{mismatches} MISMATCHES (see above: encode modes, pack targets)"
        print(f"\nParity: {what}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        results["targets"] = targets
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
