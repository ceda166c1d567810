"""``bpetok decode``: ids JSONL (as ``encode`` writes it) back to text JSONL."""

from __future__ import annotations

import argparse

import bpetok
from bpetok.cli._common import Progress, add_input_arguments, load_tokenizer, report, summary_of

HELP = "token ids (JSONL, as encode writes) back to text JSONL"


def arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser, field="ids", text=False)
    parser.add_argument("-o", "--output", metavar="OUT", help="output file (default: stdout)")


def run(args: argparse.Namespace) -> int:
    """Ids JSONL (as ``encode`` writes it) back to text JSONL, one ``{"text": ...}`` per record."""
    output = None if args.output in (None, "-") else args.output
    tok = load_tokenizer(args)
    progress = Progress(args, "decode")
    try:
        result = bpetok.decode_files(
            args.inputs,
            output,
            field=args.field,
            errors=args.errors,
            input_format=args.input_format,
            tokenizer=tok,
            num_threads=args.threads,
            progress=progress,
        )
    finally:
        progress.close()
    summary = summary_of("decode", result)
    report(args, summary, output_on_stdout=output is None)
    return 0
