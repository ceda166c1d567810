"""``bpetok verify``: check a shard directory's checksums and invariants."""

from __future__ import annotations

import argparse
import json
import sys

import bpetok
from bpetok.cli._common import load_tokenizer

HELP = "check a shard directory's checksums and invariants"


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", metavar="DIR", help="a shard directory written by bpetok pack")


def run(args: argparse.Namespace) -> int:
    """Checks a shard directory: every file's size and sha256 against the manifest, and every
    invariant of docs/shard-format.md; with --vocab, that the shards were packed with that model.
    Exit status 1 on any violation, each one listed."""
    tok = load_tokenizer(args) if args.vocab is not None else None
    report = bpetok.verify(args.directory, tokenizer=tok)
    if args.json:
        sys.stdout.write(
            json.dumps({"ok": report.ok, "summary": report.summary, "violations": report.violations}) + "\n"
        )
    else:
        stream = sys.stdout if report.ok else sys.stderr
        stream.write(f"{args.directory}: {'OK' if report.ok else 'FAILED'}: {report.summary}\n")
        for violation in report.violations:
            stream.write(f"  {violation}\n")
    return 0 if report.ok else 1
