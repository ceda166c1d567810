"""Shared fixtures: the two reference vocabularies, each as sentencepiece and as bpetok.

The models live beside the project, in ``../shared/vocab`` (see its README). ``sentencepiece`` is the
reference everywhere: a parity test compares bpetok with it, never with ids written down here.

Hypothesis profiles, chosen with the environment variable ``HYPOTHESIS_PROFILE``:
  ci   (default) enough examples to find the usual slips, the whole suite in a few minutes on 2 slow cores
  dev  many more examples, for a run before a release or after touching the encoder
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import bpetok
import pytest
import sentencepiece as spm
from hypothesis import HealthCheck, settings
from sentencepiece import sentencepiece_model_pb2

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
VOCAB_DIR = SHARED / "vocab"
MODEL_FILES = {
    "mixtral-8x7b": VOCAB_DIR / "mixtral-8x7b-v0.1.model",
    "v3": VOCAB_DIR / "mistral-v3.model",
}

settings.register_profile(
    "ci",
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "dev",
    max_examples=10000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# SentencePiece ModelProto piece types.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


@dataclass(frozen=True)
class Vocab:
    """One reference vocabulary, loaded both ways, with its piece ids sorted by type."""

    name: str
    path: Path
    sp: spm.SentencePieceProcessor
    tok: bpetok.Tokenizer
    size: int
    byte_ids: tuple[int, ...]
    control_ids: tuple[int, ...]
    user_defined_ids: tuple[int, ...]
    unk_id: int

    @property
    def special_ids(self) -> tuple[int, ...]:
        """Ids of the pieces that are not NORMAL: byte, control, user-defined and unknown."""
        return (*self.byte_ids, *self.control_ids, *self.user_defined_ids, self.unk_id)

    def __repr__(self) -> str:  # short, for test ids and Hypothesis reports
        return f"Vocab({self.name})"


def _load(name: str) -> Vocab:
    path = MODEL_FILES[name]
    if not path.is_file():
        pytest.fail(f"reference model {path} is missing: the tests need ../shared/vocab beside the repo")
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(path.read_bytes())
    ids_of = {t: tuple(i for i, p in enumerate(proto.pieces) if p.type == t) for t in range(1, 7)}
    (unk_id,) = ids_of[UNKNOWN]
    return Vocab(
        name=name,
        path=path,
        sp=spm.SentencePieceProcessor(model_file=str(path)),
        tok=bpetok.Tokenizer.from_file(path),
        size=len(proto.pieces),
        byte_ids=ids_of[BYTE],
        control_ids=ids_of[CONTROL],
        user_defined_ids=ids_of[USER_DEFINED],
        unk_id=unk_id,
    )


_CACHE: dict[str, Vocab] = {}


def get_vocab(name: str) -> Vocab:
    """The vocabulary ``name``, loaded once per test session."""
    if name not in _CACHE:
        _CACHE[name] = _load(name)
    return _CACHE[name]


@pytest.fixture(scope="session")
def mixtral() -> Vocab:
    """The Mistral 7B / Mixtral 8x7B vocabulary (the one embedded in bpetok)."""
    return get_vocab("mixtral-8x7b")


@pytest.fixture(scope="session")
def v3() -> Vocab:
    """The v3 vocabulary (Mixtral 8x22B): control pieces like [INST], user-defined [REFERENCE_DOC_N]."""
    return get_vocab("v3")


@pytest.fixture(scope="session", params=sorted(MODEL_FILES))
def vocab(request: pytest.FixtureRequest) -> Vocab:
    """Each reference vocabulary in turn."""
    return get_vocab(request.param)
