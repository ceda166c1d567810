"""Parity with sentencepiece on real text: Python code, English prose, Japanese man pages, Chinese
prose and the UI strings and man pages of many languages.

The corpora come from ``../shared/corpora/build.py`` (en, code, ja) and ``benchmarks/build_corpora.py``
(zh, multi), from Debian packages (see their docstrings), and are cached in ``$BPETOK_CORPORA`` (default
``<tmp>/bpetok-corpora``); a set is built only when its file is missing. Every set but ``code`` needs
Debian packages (``.ci/run`` installs them); without them that set is skipped, saying so.

By default the first ``$BPETOK_CORPUS_MB`` MB of each set (default 4) are checked, documents in the order
build.py writes them; ``BPETOK_CORPUS_MB=all`` checks every document.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import SHARED, Vocab
from mismatch import describe_mismatch, first_difference

BUILD_SCRIPT = SHARED / "corpora" / "build.py"
BENCH_BUILD_SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "build_corpora.py"
# set -> (script that builds it, the Debian packages it needs)
SETS = {
    "code": (BUILD_SCRIPT, None),
    "en": (BUILD_SCRIPT, "linux-doc"),
    "ja": (BUILD_SCRIPT, "manpages-ja"),
    "zh": (BENCH_BUILD_SCRIPT, "manpages-zh, debian-reference-zh-cn, ..."),
    "multi": (BENCH_BUILD_SCRIPT, "coreutils' translations, manpages-de, ..."),
}
DEFAULT_MB = "4"


def corpora_dir() -> Path:
    return Path(os.environ.get("BPETOK_CORPORA") or Path(tempfile.gettempdir()) / "bpetok-corpora")


def megabytes_limit() -> float | None:
    """How many MB of each set to check, or None for all of it."""
    value = os.environ.get("BPETOK_CORPUS_MB", DEFAULT_MB).strip().lower()
    if value == "all":
        return None
    try:
        return float(value)
    except ValueError:
        pytest.fail(f"BPETOK_CORPUS_MB must be a number of MB or 'all', not {value!r}")


def build_missing(out: Path) -> None:
    """Runs build.py for the sets that have no (non-empty) file in ``out`` yet."""
    missing = [
        name
        for name in SETS
        if not (out / f"{name}.jsonl").is_file() or not (out / f"{name}.jsonl").stat().st_size
    ]
    if not missing:
        return
    out.mkdir(parents=True, exist_ok=True)
    for script in sorted({SETS[name][0] for name in missing}):
        names = [name for name in missing if SETS[name][0] == script]
        # Build into a private folder, then move the files in: a run cut short leaves no half-written corpus.
        with tempfile.TemporaryDirectory(dir=out, prefix=".building-") as tmp:
            result = subprocess.run(
                [sys.executable, str(script), tmp, "--sets", ",".join(names)],
                capture_output=True,
                text=True,
                timeout=600,
            )
            if result.returncode != 0:
                pytest.fail(f"{script} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
            for name in names:
                built = Path(tmp) / f"{name}.jsonl"
                if (
                    built.is_file() and built.stat().st_size
                ):  # an empty set is not cached: its package may come
                    os.replace(built, out / f"{name}.jsonl")


_DOCS: dict[str, list[str]] = {}


def load_docs(name: str) -> list[str]:
    """The documents of set ``name`` to check (the first ``BPETOK_CORPUS_MB`` MB), cached per session."""
    if name not in _DOCS:
        out = corpora_dir()
        build_missing(out)
        path = out / f"{name}.jsonl"
        limit = megabytes_limit()
        docs: list[str] = []
        size = 0
        if path.is_file():
            with path.open(encoding="utf-8") as f:
                for line in f:
                    if limit is not None and size >= limit * 1e6:
                        break
                    text = json.loads(line)["text"]
                    docs.append(text)
                    size += len(text.encode("utf-8"))
        _DOCS[name] = docs
    return _DOCS[name]


@pytest.mark.parametrize("name", sorted(SETS))
def test_corpus_parity(vocab: Vocab, name: str) -> None:
    docs = load_docs(name)
    if not docs:
        pytest.skip(
            f"corpus set {name!r} has no documents: install the Debian packages ({SETS[name][1]}) "
            f"(or run {SETS[name][0]} --install); CI installs them"
        )
    expected = vocab.sp.encode(docs)  # sentencepiece encodes a list on several threads
    got = vocab.tok.encode_batch(docs)
    assert len(got) == len(docs)
    bad = [i for i, (e, g) in enumerate(zip(expected, got, strict=True)) if e != g]
    if bad:
        i = bad[0]
        pos = first_difference(expected[i], got[i])
        assert pos is not None
        # The text around the first difference, to paste into a reproducer.
        start = len(vocab.sp.decode(expected[i][: max(0, pos - 3)]))
        snippet = docs[i][max(0, start - 20) : start + 80]
        pytest.fail(
            f"{vocab.name} / {name}: {len(bad)} of {len(docs)} documents differ (indexes {bad[:20]}...)\n"
            f"document {i}: {describe_mismatch(vocab.sp, expected[i], got[i])}\n"
            f"  text near there: {snippet!r}"
        )
    n_tokens = sum(map(len, got))
    print(f"{vocab.name} / {name}: {len(docs)} documents, {n_tokens} tokens identical")
