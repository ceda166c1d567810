"""The ``bpetok`` command line: a page of options per subcommand over the library's public API.

Each subcommand is a module of this package with ``HELP`` (one line), ``arguments(parser)`` and
``run(args) -> int``, listed in :data:`SUBCOMMANDS`. Reading, encoding, packing and writing are
the library's (:func:`bpetok.pack`, :func:`bpetok.encode_files`, ...); what is here is the policy
of a command line: an expected error is one line ``bpetok: error: ...`` on stderr and exit status
1 (2 for usage errors, with the subcommand's usage; 130 on Ctrl-C), never a traceback.
``docs/cli.md`` describes the result.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType, ModuleType

from bpetok.cli import count, decode, encode, inspect, pack, verify
from bpetok.cli._common import GLOBAL_DEFAULTS, PROG, CliError, add_global_arguments, error_line

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

SUBCOMMANDS: dict[str, ModuleType] = {
    "encode": encode,
    "decode": decode,
    "count": count,
    "pack": pack,
    "inspect": inspect,
    "verify": verify,
}
"""Subcommand name -> its module: add a subcommand by adding a module and a line."""


def build_parser() -> argparse.ArgumentParser:
    from bpetok import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Exact SentencePiece BPE for Mistral / Mixtral vocabularies: encode, decode, "
        "count tokens, pack training shards, inspect and verify them.",
        epilog="Exit status: 0 done, 1 bad input or I/O error, 2 usage error, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    # Global options are parsed before and after the subcommand name; SUPPRESS keeps a value
    # given before it from being reset by the subparser's default.
    add_global_arguments(parser, argparse.SUPPRESS)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=module.HELP, description=module.run.__doc__)
        module.arguments(sub)
        add_global_arguments(sub, argparse.SUPPRESS)
        sub.set_defaults(run=module.run, parser=sub)
    return parser


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for key, value in GLOBAL_DEFAULTS.items():
        if not hasattr(args, key):
            setattr(args, key, value)
    if threading.current_thread() is threading.main_thread():
        # SIGTERM stops a run as Ctrl-C does: the library removes its temporary files.
        signal.signal(signal.SIGTERM, _terminate)
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    import bpetok

    try:
        return int(args.run(args))
    except CliError as err:
        if err.status == 2:
            args.parser.error(str(err))  # the subcommand's usage, exit 2
        return _fail(str(err), err.status)
    except bpetok.BpetokError as err:
        return _fail(error_line(err), 1)
    except KeyboardInterrupt:
        sys.stderr.write(f"\n{PROG}: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (as with `| head`): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        return _fail(f"{where}{err.strerror or err}", 1)


def _fail(message: str, status: int) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return status
