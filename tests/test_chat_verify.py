"""`bpetok verify` on outputs of conversations: the loss mask is checked like the tokens (its
file's size, hash, dtype and shape; never set on padding; a chunk's context repeats the mask of
the chunk before; target counts), and a plain output never has one."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import bpetok
import numpy as np
import pytest


def _conversations(n: int) -> list[dict[str, object]]:
    out = []
    for i in range(n):
        messages: list[dict[str, object]] = [{"role": "system", "content": "Be brief."}] if i % 3 == 0 else []
        for t in range(1 + i % 3):
            messages.append({"role": "user", "content": f"question {i}.{t} " + "word " * (7 * i % 40)})
            reply = {"role": "assistant", "content": f"answer {i}.{t} " + "reply " * (13 * i % 200)}
            if i % 4 == 0 and t == 0:
                reply["weight"] = 0
            messages.append(reply)
        out.append({"messages": messages})
    return out


@pytest.fixture()
def packed(tmp_path: Path) -> Path:
    src = tmp_path / "chat.jsonl"
    src.write_text("".join(json.dumps(c) + "\n" for c in _conversations(40)), encoding="utf-8")
    out = tmp_path / "out"
    bpetok.pack(src, out, seq_len=256, window=64, chat="v1", num_threads=1)
    return out


def _rewrite(out: Path, name: str, array: np.ndarray) -> None:
    """Writes `array` as shard file `name` and updates its size and hash in the manifest, so only
    the semantic checks can catch the change."""
    path = out / name
    np.save(path, array)
    data = path.read_bytes()
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for shard in manifest["shards"]:
        for entry in shard["files"].values():
            if entry["path"] == name:
                entry["size"] = len(data)
                entry["sha256"] = hashlib.sha256(data).hexdigest()
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")


def test_a_packed_conversation_output_verifies_and_records_its_format(packed: Path) -> None:
    report = bpetok.verify(packed)
    assert report.ok, report.violations
    manifest = json.loads((packed / "manifest.json").read_text())
    assert manifest["options"]["chat"] == {"format": "v1", "train_on": "assistant"}
    mask = np.load(packed / "shard-00000.loss_mask.npy")
    tokens = np.load(packed / "shard-00000.tokens.npy")
    assert mask.dtype == np.bool_ and mask.shape == tokens.shape
    # Fewer targets than document tokens: user turns are not trained on.
    totals = manifest["totals"]
    assert 0 < totals["target_tokens"] < totals["document_tokens"] - totals["documents"]


def test_a_mask_set_on_padding_is_a_violation(packed: Path) -> None:
    mask = np.load(packed / "shard-00000.loss_mask.npy")
    tokens = np.load(packed / "shard-00000.tokens.npy")
    segments = np.load(packed / "shard-00000.segments.npy")
    pad = next(row for row in segments if row[3] == -1)
    index = np.load(packed / "shard-00000.sample_index.npy")
    sample = int(np.searchsorted(index, np.flatnonzero((segments == pad).all(axis=1))[0], side="right") - 1)
    mask[sample, pad[0]] = True
    assert tokens[sample, pad[0]] == json.loads((packed / "manifest.json").read_text())["options"]["pad_id"]
    _rewrite(packed, "shard-00000.loss_mask.npy", mask)
    report = bpetok.verify(packed)
    assert not report.ok
    assert any("loss mask is set on padding" in v for v in report.violations), report.violations


def test_a_context_mask_that_differs_from_the_previous_chunk_is_a_violation(packed: Path) -> None:
    segments = np.load(packed / "shard-00000.segments.npy")
    index = np.load(packed / "shard-00000.sample_index.npy")
    row = next(r for r, seg in enumerate(segments) if seg[2] > 0)  # a continuation chunk
    sample = int(np.searchsorted(index, row, side="right") - 1)
    mask = np.load(packed / "shard-00000.loss_mask.npy")
    start = segments[row][0]
    mask[sample, start] = not mask[sample, start]
    _rewrite(packed, "shard-00000.loss_mask.npy", mask)
    report = bpetok.verify(packed)
    assert not report.ok
    assert any("context tokens" in v for v in report.violations), report.violations


def test_a_changed_target_count_is_a_violation(packed: Path) -> None:
    mask = np.load(packed / "shard-00000.loss_mask.npy")
    segments = np.load(packed / "shard-00000.segments.npy")
    index = np.load(packed / "shard-00000.sample_index.npy")
    # The last token of a document's last chunk: never context for a later chunk.
    row = next(r for r, seg in enumerate(segments) if seg[3] >= 0 and seg[1] < 256 and seg[1] > 2)
    sample = int(np.searchsorted(index, row, side="right") - 1)
    end = segments[row][0] + segments[row][1] - 1
    mask[sample, end] = not mask[sample, end]
    _rewrite(packed, "shard-00000.loss_mask.npy", mask)
    report = bpetok.verify(packed)
    assert not report.ok
    assert any("target_tokens" in v for v in report.violations), report.violations


def test_a_missing_or_unexpected_loss_mask_is_a_violation(packed: Path, tmp_path: Path) -> None:
    manifest_path = packed / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["shards"][0]["files"]["loss_mask"]
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    report = bpetok.verify(packed)
    assert any("loss_mask" in v for v in report.violations), report.violations

    plain_src = tmp_path / "plain.jsonl"
    plain_src.write_text('{"text": "hello world"}\n' * 20, encoding="utf-8")
    plain = tmp_path / "plain"
    bpetok.pack(plain_src, plain, seq_len=64, window=16)
    assert not list(plain.glob("*.loss_mask.npy"))
    manifest = json.loads((plain / "manifest.json").read_text())
    assert "chat" not in manifest["options"]
    assert "loss_mask" not in manifest["shards"][0]["files"]
