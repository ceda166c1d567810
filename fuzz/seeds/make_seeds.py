#!/usr/bin/env python3
"""Writes the checked-in seed corpora, fuzz/seeds/<target>/, from fixed texts, the parquet fixtures
of rust/bpetok/tests/fixtures and shortened copies of the reference models (../shared/vocab). Files
named regress-* are inputs that once found something; they are kept as they are.
Deterministic; run from anywhere: python3 fuzz/seeds/make_seeds.py. Needs `zstandard` (pip)."""

import gzip
import json
import random
from pathlib import Path

import zstandard

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VOCAB = REPO.parent / "shared" / "vocab"

TEXTS = [
    b"Hello world",
    b"  two leading spaces, a tab\tand a newline\n",
    b"The quick brown fox jumps over the lazy dog. 0123456789 !?",
    "\u65e5\u672c\u8a9e\u306e\u6587\u7ae0\u3067\u3059\u3002".encode(),
    "\u2581already\u2581escaped \u2581 spaces".encode(),
    b"\x00NUL\x00 and \x7f DEL",
    b"invalid \xff\xfe utf-8 \xe2\x96 truncated \xc0\xaf overlong \xed\xa0\x80 surrogate",
    b" " * 70 + b"x",
    b"a" * 100,
    b"def f(x):\n    return x ** 2  # comment\n\n\nclass A:\n    pass\n",
    "emoji \U0001f600\U0001f680 and \u00e9\u00e8 and \u0410\u0411\u0412".encode(),
    b"[INST] <s> </s> <unk> <0x41> [REFERENCE_DOC_1] [/INST]",
    b"Supercalifragilisticexpialidocious antidisestablishmentarianism",
    b"one\xffcut\xff\xffthree pieces",
]


def write(target, name, data):
    d = HERE / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def varint(b, i):
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return r, i


def fields(b):
    i, out = 0, []
    while i < len(b):
        start = i
        key, i = varint(b, i)
        wire = key & 7
        if wire == 0:
            _, i = varint(b, i)
        elif wire == 2:
            n, i = varint(b, i)
            i += n
        elif wire == 5:
            i += 4
        elif wire == 1:
            i += 8
        out.append((key >> 3, b[start:i]))
    return out


def shortened_model(path, normal_pieces):
    """The model with only its reserved and byte pieces and the first `normal_pieces` normal ones."""
    b = path.read_bytes()
    fs = fields(b)
    pieces = [raw for number, raw in fs if number == 1]
    first_normal = {"mixtral-8x7b-v0.1.model": 259, "mistral-v3.model": 1027}[path.name]
    kept = pieces[: first_normal + normal_pieces]
    return b"".join(kept) + b"".join(raw for number, raw in fs if number != 1)


def main():
    for target in [
        "encode_roundtrip",
        "encode_fast_path",
        "load_model",
        "load_mutated_model",
        "pack",
        "read_input",
        "verify_shards",
    ]:
        # Inputs that found something (regress-*) are kept; everything else is written anew.
        for old in (HERE / target).glob("*"):
            if not old.name.startswith("regress-"):
                old.unlink()
    rng = random.Random(8)
    for i, text in enumerate(TEXTS):
        write("encode_roundtrip", f"text-{i:02}", text)
        write("encode_fast_path", f"text-{i:02}", text)

    for name in ["mixtral-8x7b-v0.1.model", "mistral-v3.model"]:
        stem = name.split(".model")[0]
        write("load_model", f"{stem}-64", shortened_model(VOCAB / name, 64))
    write("load_model", "empty", b"")
    write("load_model", "garbage", bytes(rng.randrange(256) for _ in range(64)))

    for i in range(12):
        write("load_mutated_model", f"random-{i:02}", bytes(rng.randrange(256) for _ in range(48)))
    for i in range(12):
        write("pack", f"random-{i:02}", bytes(rng.randrange(256) for _ in range(rng.randrange(8, 96))))
    for i in range(16):
        write(
            "verify_shards",
            f"random-{i:02}",
            bytes([i % 13, i % 3]) + bytes(rng.randrange(256) for _ in range(24)),
        )

    # read_input: a mode byte (format = mode % 3: jsonl, text, parquet; mode >> 2 & 3: compression
    # auto, none, gzip, zstd; 0x10 lines, 0x20 replace, 0x40 field "text" else "t"; 0x80 compress
    # here and compare) and the file.
    jsonl = b"".join(
        json.dumps({"text": t.decode("utf-8", "replace"), "id": i}).encode() + b"\n"
        for i, t in enumerate(TEXTS[:6])
    )
    jsonl += b'{"text": "\\ud83d\\ude00 pair", "t": 1}\n\n   \n{"text": "\\ud800 lone"}\n'
    text = b"\n".join(TEXTS[:6])
    seeds = {
        "jsonl": (0x40, jsonl),
        "jsonl-replace": (0x60, jsonl),
        "jsonl-bom-crlf": (0x40, b"\xef\xbb\xbf" + jsonl.replace(b"\n", b"\r\n")),
        "jsonl-gzip": (0x40, gzip.compress(jsonl, mtime=0)),
        "jsonl-zstd": (0x40, zstandard.ZstdCompressor().compress(jsonl)),
        "jsonl-compare-gzip": (0xC0, jsonl),
        "jsonl-compare-zstd": (0xC4, jsonl),
        "text": (0x01, text),
        "text-lines": (0x11, text),
        "text-lines-replace": (0x31, text),
        "text-gzip-two-members": (
            0x01,
            gzip.compress(text, mtime=0) + b"\0\0" + gzip.compress(b"more", mtime=0),
        ),
        "text-compare-zstd": (0xD5, text),
    }
    for name, (mode, payload) in seeds.items():
        write("read_input", name, bytes([mode]) + payload)
    fixtures = REPO / "rust" / "bpetok" / "tests" / "fixtures"
    for p in sorted(fixtures.glob("*.parquet")):
        write("read_input", "parquet-" + p.stem, bytes([0x42]) + p.read_bytes())
    write(
        "read_input", "parquet-compare-gzip", bytes([0xC2]) + (fixtures / "texts-none.parquet").read_bytes()
    )


if __name__ == "__main__":
    main()
