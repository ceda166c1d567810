"""``bpetok inspect``: totals and segment lengths of a shard directory, and one sample decoded."""

from __future__ import annotations

import argparse
import json
import sys

import bpetok
from bpetok.cli._common import CliError, load_tokenizer, plural

HELP = "totals and segment lengths of a shard directory"


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", metavar="DIR", help="a shard directory written by bpetok pack")
    parser.add_argument(
        "--show",
        type=int,
        default=None,
        metavar="I",
        help="decode sample I (counted over all shards, negative from the end) with its segments marked; "
        "the shards' tokenizer must be the one given with --vocab (default: the embedded one)",
    )


def run(args: argparse.Namespace) -> int:
    """Totals, padding and context shares and a histogram of segment lengths of a shard
    directory; --show I decodes one sample with its segments marked."""
    summary = bpetok.inspect(args.directory)
    shown = None
    if args.show is not None:
        try:
            shown = bpetok.show_sample(args.directory, args.show, tokenizer=load_tokenizer(args))
        except IndexError as err:
            raise CliError(f"--show {args.show}: {err}") from None
    if args.json:
        if shown is not None:
            summary["sample"] = shown
        sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
        return 0
    t = summary["totals"]
    lines = [
        f"{args.directory}: {plural(summary['shards'], 'shard')}, {plural(t['samples'], 'sample')} of "
        f"{summary['seq_len']} tokens ({summary['token_dtype']}), window {summary['window']}, "
        f"overlap {summary['overlap_tokens']}",
        f"{plural(t['documents'], 'document')} ({t['documents_split']:,} split, {t['empty_documents']:,} "
        f"empty), document tokens {t['document_tokens']:,}",
        f"padding {summary['padding_percent']:.2f}%  context {summary['context_percent']:.2f}%  "
        f"targets {summary['target_percent']:.2f}%",
        "segment lengths          documents    padding",
    ]
    for bucket in summary["segment_lengths"]:
        span = f"{bucket['min']}-{bucket['max']}"
        lines.append(f"  {span:>20}  {bucket['document_segments']:>10,}  {bucket['padding_segments']:>9,}")
    if shown is not None:
        lines.append(f"sample {shown['index']}:")
        for seg in shown["segments"]:
            where = "padding" if seg["doc_id"] < 0 else f"doc {seg['doc_id']} from token {seg['doc_start']}"
            lines.append(f"  [{where}, {seg['length']} tokens] {seg['text']!r}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
