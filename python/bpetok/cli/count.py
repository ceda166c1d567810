"""``bpetok count``: documents, tokens, text bytes and tokens per byte of every input."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import bpetok
from bpetok.cli._common import (
    Progress,
    add_input_arguments,
    input_options,
    load_tokenizer,
    report,
    throughput,
)

HELP = "count the documents, tokens and bytes of text of every input"

COLUMNS = ("documents", "tokens", "bytes", "tokens/byte", "input")


def arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser)
    parser.add_argument(
        "--bos",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="count a <s> at the start of each document, as encode --bos writes it (default: no)",
    )
    parser.add_argument(
        "--eos",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="count a </s> at the end of each document, as encode --eos writes it (default: no)",
    )


def run(args: argparse.Namespace) -> int:
    """Counts the documents, tokens and UTF-8 bytes of text of every input (each file of a
    directory apart) and in total, as ``encode`` would make the tokens, without making them: a
    table on stdout, or with ``--json`` one JSON object."""
    tok = load_tokenizer(args)
    progress = Progress(args, "count")
    try:
        result = bpetok.count_files(
            args.inputs,
            bos=args.bos,
            eos=args.eos,
            tokenizer=tok,
            num_threads=args.threads,
            progress=progress,
            **input_options(args),
        )
    finally:
        progress.close()
    summary = summary_of(result)
    if args.json:
        report(args, summary, output_on_stdout=False)
        return 0
    sys.stdout.write(table(result))
    sys.stdout.flush()
    report(args, summary, output_on_stdout=True)
    return 0


def summary_of(result: bpetok.CountResult) -> dict[str, Any]:
    """The summary every subcommand reports, with the counts of every input in ``per_input``."""
    return {
        "command": "count",
        "output": None,
        "inputs": result.inputs,
        "documents": result.documents,
        "tokens": result.tokens,
        "text_bytes": result.text_bytes,
        "tokens_per_byte": round(result.tokens_per_byte, 6),
        "input_bytes": result.input_bytes,
        "seconds": round(result.seconds, 3),
        "mb_per_s": throughput(result.input_bytes, result.seconds),
        "per_input": [
            {
                "input": item.name,
                "documents": item.documents,
                "tokens": item.tokens,
                "text_bytes": item.text_bytes,
                "tokens_per_byte": round(item.tokens_per_byte, 6),
                "input_bytes": item.input_bytes,
            }
            for item in result.per_input
        ],
    }


def table(result: bpetok.CountResult) -> str:
    """One row per input and one for the total, numbers right-aligned, the input name last."""
    rows = [
        (f"{i.documents:,}", f"{i.tokens:,}", f"{i.text_bytes:,}", f"{i.tokens_per_byte:.4f}", i.name)
        for i in result.per_input
    ]
    rows.append(
        (
            f"{result.documents:,}",
            f"{result.tokens:,}",
            f"{result.text_bytes:,}",
            f"{result.tokens_per_byte:.4f}",
            "total",
        )
    )
    widths = [max(len(row[k]) for row in [COLUMNS, *rows]) for k in range(4)]
    lines = []
    for row in [COLUMNS, *rows]:
        numbers = "  ".join(cell.rjust(width) for cell, width in zip(row[:4], widths, strict=True))
        lines.append(f"{numbers}  {row[4]}\n")
    return "".join(lines)
