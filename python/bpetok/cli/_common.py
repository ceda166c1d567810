"""What every subcommand shares: global and input options, loading the tokenizer, the progress
bar, the summary, and the one place where an error of the library becomes one line for a person
at a terminal (:func:`error_line`), with the flag that fixes it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import bpetok
from bpetok._data import _plural as plural  # one counting rule for the library and the CLI

__all__ = [
    "CliError",
    "Progress",
    "add_global_arguments",
    "add_input_arguments",
    "error_line",
    "input_options",
    "load_tokenizer",
    "non_negative_int",
    "plural",
    "positive_int",
    "report",
    "summary_of",
    "throughput",
    "warn",
]

PROG = "bpetok"
INPUT_FORMATS = ("auto", "jsonl", "text", "parquet")


class CliError(Exception):
    """An expected failure: ``main`` prints ``bpetok: error: MESSAGE`` and exits with ``status``
    (2: a usage error, printed with the subcommand's usage)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}")
        return value

    return parse


positive_int = int_at_least(1, "positive")
non_negative_int = int_at_least(0, "non-negative")


def add_global_arguments(parser: argparse.ArgumentParser, default: Any) -> None:
    """The global options; accepted before and after the subcommand name."""
    group = parser.add_argument_group("global options")
    group.add_argument(
        "--vocab",
        metavar="MODEL",
        default=default,
        help="SentencePiece .model file (default: the embedded Mistral 7B / Mixtral 8x7B vocabulary)",
    )
    group.add_argument(
        "--threads",
        metavar="N",
        type=positive_int,
        default=default,
        help="encoding threads (default: every CPU this process may use)",
    )
    group.add_argument(
        "--quiet", action="store_true", default=default, help="no progress bar and no summary on stderr"
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default,
        help="print the summary as one JSON object (on stdout, or on stderr when stdout is the output)",
    )


GLOBAL_DEFAULTS: dict[str, Any] = {"vocab": None, "threads": None, "quiet": False, "json": False}


def add_input_arguments(parser: argparse.ArgumentParser, *, field: str = "text", text: bool = True) -> None:
    """``INPUT...`` and the options saying how to read them (``docs/cli.md``, "Inputs")."""
    parser.add_argument(
        "inputs",
        metavar="INPUT",
        nargs="+",
        help="files, directories (walked in sorted order) or - for stdin",
    )
    what = "text" if text else "ids"
    parser.add_argument(
        "--field",
        default=field,
        help=f"JSONL field{' / Parquet column' if text else ''} holding the {what} (default: {field})",
    )
    if text:
        parser.add_argument(
            "--lines", action="store_true", help="in text files, every non-empty line is a document"
        )
    parser.add_argument(
        "--input-format",
        choices=INPUT_FORMATS if text else ("auto", "jsonl"),
        default="auto",
        help="how to read every input (default: auto, from the file name; stdin is JSONL); a "
        "directory with a format given contributes every file in it",
    )
    if text:
        parser.add_argument(
            "--chat",
            choices=("v1", "v2", "v3"),
            default=None,
            metavar="FORMAT",
            help='read every JSONL line as a conversation ({"messages": [...], "tools": [...]}) '
            "in Mistral's instruct format v1, v2 or v3, as mistral-common writes it (docs/chat.md); "
            "--field, --bos and --eos do not apply",
        )
        parser.add_argument(
            "--train-on",
            choices=("assistant", "all"),
            default="assistant",
            help="with --chat: the tokens that are training targets, the assistant messages' "
            "(default) or all",
        )
    parser.add_argument(
        "--errors",
        choices=("strict", "replace"),
        default="strict",
        help="invalid UTF-8 (and lone surrogates in JSON): an error (strict, the default) "
        "or U+FFFD (replace)",
    )


def input_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of the library's reading functions, from the input options."""
    options: dict[str, Any] = {
        "field": args.field,
        "errors": args.errors,
        "input_format": args.input_format,
    }
    if hasattr(args, "lines"):
        options["lines"] = args.lines
    if getattr(args, "chat", None) is not None:
        options["chat"] = args.chat
        options["train_on"] = args.train_on
    return options


def load_tokenizer(args: argparse.Namespace) -> bpetok.Tokenizer:
    """The tokenizer of ``--vocab``, or the embedded one."""
    if args.vocab is None:
        return bpetok.Tokenizer.default()
    try:
        return bpetok.Tokenizer.from_file(args.vocab)
    except OSError as err:
        raise CliError(f"{args.vocab}: {err.strerror or err}") from None


class Progress:
    """A tqdm bar of raw input bytes with documents and tokens, on a terminal only, as the
    ``progress`` callback of the library's functions.

    Disabled with ``--quiet`` or when ``stream`` (stderr) is not a terminal. It appears only for
    runs longer than half a second, and :meth:`close` removes it from the screen (the summary
    line follows), so a short run leaves no bar behind.
    """

    def __init__(self, args: argparse.Namespace, description: str, stream: Any = None) -> None:
        self._bar: Any = None
        stream = sys.stderr if stream is None else stream
        if args.quiet or not stream.isatty():
            return
        try:
            from tqdm import tqdm  # type: ignore[import-untyped]
        except ImportError:  # a broken install: go on without a bar
            return
        self._bar = tqdm(
            desc=description,
            unit="B",
            unit_scale=True,
            unit_divisor=1000,
            file=stream,
            dynamic_ncols=True,
            mininterval=0.25,
            delay=0.5,
            smoothing=0.1,
            leave=False,
        )

    def __call__(self, update: bpetok.Progress) -> None:
        bar = self._bar
        if bar is None:
            return
        if update.total_bytes is not None and bar.total != update.total_bytes:
            bar.total = update.total_bytes
        bar.set_postfix_str(f"{update.documents:,} docs, {update.tokens:,} tokens", refresh=False)
        bar.update(update.bytes_read - bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def report(args: argparse.Namespace, summary: dict[str, Any], *, output_on_stdout: bool) -> None:
    """Prints the summary: one line on stderr (not with ``--quiet``), or with ``--json`` one JSON
    object on stdout (on stderr when stdout carries the command's output)."""
    if args.json:
        stream = sys.stderr if output_on_stdout else sys.stdout
        stream.write(json.dumps(summary, sort_keys=True) + "\n")
        stream.flush()
        return
    if args.quiet:
        return
    parts = [plural(summary["documents"], "document")]
    if "tokens" in summary:
        parts.append(plural(summary["tokens"], "token"))
    megabytes = summary["input_bytes"] / 1e6
    parts.append(f"{megabytes:,.1f} MB in {summary['seconds']:.2f} s ({summary['mb_per_s']:,.1f} MB/s)")
    parts.extend(summary.get("extra", []))
    where = f" -> {summary['output']}" if summary.get("output") else ""
    sys.stderr.write(f"{PROG} {summary['command']}: {', '.join(parts)}{where}\n")


def warn(args: argparse.Namespace, message: str) -> None:
    """``bpetok: warning: MESSAGE`` on stderr (also with ``--quiet``: a warning is not progress)."""
    sys.stderr.write(f"{PROG}: warning: {message}\n")


def throughput(input_bytes: int, seconds: float) -> float:
    return round(input_bytes / 1e6 / seconds, 3) if seconds > 0 else 0.0


def summary_of(command: str, result: Any, **extra: Any) -> dict[str, Any]:
    """The summary fields every subcommand reports, from a result of the library, plus ``extra``."""
    return {
        "command": command,
        "output": result.output,
        "inputs": result.inputs,
        "documents": result.documents,
        "tokens": result.tokens,
        "input_bytes": result.input_bytes,
        "seconds": round(result.seconds, 3),
        "mb_per_s": throughput(result.input_bytes, result.seconds),
        **extra,
    }


# How to fix an error, in the command line's words, by the error's kind. The library's message
# says what went wrong and where; this adds the flag.
_HINTS: dict[str, str] = {
    "invalid_utf8": "pass --errors replace to read invalid bytes as U+FFFD",
    "lone_surrogate": "pass --errors replace to read it as U+FFFD",
    "missing_field": "name the field with --field",
    "missing_column": "name the text column with --field",
    "unknown_format": "or pass --input-format",
    "directory_in_use": "choose an empty or new directory, or pass --overwrite to replace it",
    "unfinished_run": "pass --resume to continue it, or --overwrite to start again",
    "cannot_resume": "run with the interrupted run's inputs and options, or pass --overwrite to start again",
    "tokenizer_mismatch": "pass --vocab with the model the shards were packed with",
}

_OPTION_FLAGS: dict[str, str] = {
    "seq_len": "--seq-len",
    "window": "--window",
    "overlap": "--overlap",
    "pad_id": "--pad-id",
    "samples_per_shard": "--samples-per-shard",
    "pack_buffer": "--pack-buffer",
    "bos": "--bos",
    "eos": "--eos",
    "output": "-o",
    "resume": "--resume",
    "partition_size": "--partition-size",
}

_OPTION_HINTS: dict[str, str] = {"bos": "pass --no-bos", "eos": "pass --no-eos"}


def error_line(err: bpetok.BpetokError) -> str:
    """The one line that ``bpetok: error:`` is followed by, for an error of the library."""
    if isinstance(err, bpetok.PackOptionsError) and err.option is not None:
        flag = _OPTION_FLAGS.get(err.option, err.option)
        message = str(err).removeprefix(f"{err.option}: ")
        hint = _OPTION_HINTS.get(err.option)
        return f"{flag}: {message}" + (f"; {hint}" if hint else "")
    if isinstance(err, OSError) and err.strerror:
        message = f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    else:
        message = str(err)
    hint = _HINTS.get(err.kind)
    if hint is None:
        return message
    return f"{message}, {hint}" if hint.startswith("or ") else f"{message}; {hint}"
