"""``bpetok encode``: text to token ids, as JSONL or Megatron-LM ``.bin`` / ``.idx``."""

from __future__ import annotations

import argparse

import bpetok
from bpetok.cli._common import (
    CliError,
    Progress,
    add_input_arguments,
    input_options,
    load_tokenizer,
    report,
    summary_of,
)

HELP = "text to token ids (JSONL, or Megatron-LM .bin/.idx)"


def arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser)
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="output file (default: stdout); with --format megatron the PREFIX of PREFIX.bin / PREFIX.idx",
    )
    parser.add_argument(
        "--format",
        choices=("jsonl", "megatron"),
        default="jsonl",
        help='jsonl: one {"ids": [...]} per document (default); megatron: Megatron-LM .bin/.idx',
    )
    parser.add_argument(
        "--bos",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="start each document with <s> (default: no)",
    )
    parser.add_argument(
        "--eos",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="end each document with </s> (default: no)",
    )


def run(args: argparse.Namespace) -> int:
    """Text to token ids, as JSONL or Megatron-LM files; one output record per document."""
    output = None if args.output in (None, "-") else args.output
    if args.format == "megatron":
        if output is None:
            raise CliError("--format megatron needs -o PREFIX (it writes PREFIX.bin and PREFIX.idx)", 2)
        if output.endswith((".bin", ".idx")):
            raise CliError(f"-o takes the prefix, without .bin / .idx: -o {output[:-4]}", 2)
    tok = load_tokenizer(args)
    progress = Progress(args, "encode")
    try:
        result = bpetok.encode_files(
            args.inputs,
            output,
            format=args.format,
            bos=args.bos,
            eos=args.eos,
            tokenizer=tok,
            num_threads=args.threads,
            progress=progress,
            **input_options(args),
        )
    finally:
        progress.close()
    summary = summary_of("encode", result, format=args.format)
    report(args, summary, output_on_stdout=output is None)
    return 0
