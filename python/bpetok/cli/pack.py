"""``bpetok pack``: text to sliding-window-aware training shards."""

from __future__ import annotations

import argparse

import bpetok
from bpetok import _bpetok
from bpetok.cli._common import (
    Progress,
    add_input_arguments,
    input_options,
    load_tokenizer,
    non_negative_int,
    plural,
    positive_int,
    report,
    summary_of,
    warn,
)

HELP = "text to sliding-window-aware training shards"

CONTEXT_WARNING = 0.25
"""Warn when more than this share of the sample tokens is repeated context."""
PADDING_WARNING = 0.5
"""Warn when more than this share of the sample tokens is padding."""


def arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser)
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="the shard directory to write")
    parser.add_argument(
        "--seq-len",
        type=positive_int,
        required=True,
        metavar="L",
        help=f"tokens per sample (2 to {bpetok.MAX_SEQ_LEN:,})",
    )
    parser.add_argument(
        "--window",
        type=non_negative_int,
        required=True,
        metavar="W",
        help="sliding window: a token sees itself and the W-1 before it (0: full causal attention)",
    )
    parser.add_argument(
        "--overlap",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="context tokens repeated at the start of a continuation chunk (default: W when 0 < W < L, "
        "else 1; less than W loses context, see docs/packing.md)",
    )
    parser.add_argument(
        "--pack-buffer",
        type=positive_int,
        default=_bpetok.DEFAULT_PACK_BUFFER,
        metavar="CHUNKS",
        help="chunks held for best-fit packing before samples are written "
        f"(default {_bpetok.DEFAULT_PACK_BUFFER})",
    )
    parser.add_argument("--seed", type=non_negative_int, default=0, help="shuffle seed (default 0)")
    parser.add_argument(
        "--samples-per-shard",
        type=positive_int,
        default=_bpetok.DEFAULT_SAMPLES_PER_SHARD,
        metavar="N",
        help=f"default {_bpetok.DEFAULT_SAMPLES_PER_SHARD}",
    )
    parser.add_argument(
        "--bos",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start documents with <s> (default)",
    )
    parser.add_argument(
        "--eos", action=argparse.BooleanOptionalAction, default=True, help="end documents with </s> (default)"
    )
    parser.add_argument(
        "--pad-id",
        type=non_negative_int,
        default=None,
        metavar="ID",
        help="the id padding tokens hold (default: the </s> id, or 0 without one); padding is never a target",
    )
    parser.add_argument(
        "--skip-bad-records",
        action="store_true",
        help="pass over (and count, per input in the manifest) JSONL lines that are not JSON objects "
        "or lack the text field, and Parquet nulls, instead of stopping at the first",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing shard output in DIR (only its files)"
    )
    parser.add_argument(
        "--partition-size",
        default=None,
        metavar="SIZE",
        help="cut the inputs into partitions of about SIZE bytes (e.g. 256MiB: by file, byte ranges of "
        "large JSONL and text-lines files, row groups of Parquet) and pack each alone into DIR/part-NNNNN/, "
        "as bpetok.ray does on a cluster (docs/distributed.md)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run interrupted in DIR (same inputs and options): the result is byte for byte "
        "that of an uninterrupted run; starts from the beginning when there is nothing to continue",
    )


def run(args: argparse.Namespace) -> int:
    """Text to training shards: documents are encoded, long ones cut with their sliding window's
    context, packed into samples of exactly --seq-len tokens by best-fit decreasing, shuffled and
    written as .npy shards with a manifest (docs/packing.md, docs/shard-format.md)."""
    tok = load_tokenizer(args)
    progress = Progress(args, "pack")
    try:
        result = bpetok.pack(
            args.inputs,
            args.output,
            seq_len=args.seq_len,
            window=args.window,
            overlap=args.overlap,
            pack_buffer=args.pack_buffer,
            seed=args.seed,
            pad_id=args.pad_id,
            samples_per_shard=args.samples_per_shard,
            bos=args.bos,
            eos=args.eos,
            skip_bad_records=args.skip_bad_records,
            overwrite=args.overwrite,
            resume=args.resume,
            partition_size=args.partition_size,
            tokenizer=tok,
            num_threads=args.threads,
            progress=progress,
            **input_options(args),
        )
    finally:
        progress.close()
    summary = summary_of(
        "pack",
        result,
        samples=result.samples,
        shards=result.shards,
        padding_tokens=result.padding_tokens,
        context_tokens=result.context_tokens,
        padding_share=round(result.padding_share, 6),
        context_share=round(result.context_share, 6),
        documents_split=result.documents_split,
        extra=[
            f"{plural(result.samples, 'sample')} in {plural(result.shards, 'shard')}",
            f"padding {result.padding_share:.1%}",
            f"context {result.context_share:.1%}",
        ],
    )
    if result.skipped_records is not None:
        summary["skipped_records"] = result.skipped_records
        summary["extra"].append(f"{plural(result.skipped_records, 'bad record')} skipped")
    if result.resumed is not None:
        summary["resumed"] = result.resumed._asdict()
        summary["extra"].append(
            "already complete"
            if result.resumed.complete
            else f"resumed after {plural(result.resumed.shards, 'shard')}"
        )
    if args.json:
        del summary["extra"]
    report(args, summary, output_on_stdout=False)
    if result.documents == 0:
        warn(args, "the inputs hold no documents, so the output has no samples")
    if result.context_share > CONTEXT_WARNING:
        warn(
            args,
            f"{result.context_share:.1%} of the sample tokens are context repeated from the chunk "
            f"before (long documents are split with up to {result.overlap_tokens:,} tokens of their "
            "window); a smaller --overlap trades context for fewer tokens (docs/packing.md)",
        )
    if result.padding_share > PADDING_WARNING:
        warn(
            args,
            f"{result.padding_share:.1%} of the sample tokens are padding: --seq-len {args.seq_len} "
            "is long for these documents",
        )
    return 0
