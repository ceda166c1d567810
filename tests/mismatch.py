"""Readable reports of where bpetok's ids part from sentencepiece's (imported by the parity tests)."""

from __future__ import annotations

from collections.abc import Sequence

import sentencepiece as spm


def first_difference(expected: Sequence[int], got: Sequence[int]) -> int | None:
    """The first index where the two id lists differ (a length difference counts), or None."""
    for i, (a, b) in enumerate(zip(expected, got, strict=False)):
        if a != b:
            return i
    return None if len(expected) == len(got) else min(len(expected), len(got))


def _pieces(sp: spm.SentencePieceProcessor, ids: Sequence[int]) -> list[str]:
    return [sp.id_to_piece(i) if 0 <= i < sp.vocab_size() else f"<bad id {i}>" for i in ids]


def describe_mismatch(
    sp: spm.SentencePieceProcessor, expected: Sequence[int], got: Sequence[int], window: int = 6
) -> str:
    """Where ``got`` (bpetok) first differs from ``expected`` (sentencepiece), with the pieces around it."""
    pos = first_difference(expected, got)
    if pos is None:
        return "ids are equal"
    lo = max(0, pos - window)
    hi = pos + window
    return (
        f"first difference at token {pos} (sentencepiece {len(expected)} tokens, bpetok {len(got)})\n"
        f"  sentencepiece [{lo}:{hi}]: ids {list(expected[lo:hi])} pieces {_pieces(sp, expected[lo:hi])}\n"
        f"  bpetok        [{lo}:{hi}]: ids {list(got[lo:hi])} pieces {_pieces(sp, got[lo:hi])}"
    )
