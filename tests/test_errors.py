"""The exception hierarchy: every error of the data path is a ``bpetok.BpetokError`` and also the
builtin a caller already catches, with its kind and, for inputs, where."""

from __future__ import annotations

import json
import os
from pathlib import Path

import bpetok
import pytest


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_hierarchy() -> None:
    for cls, builtin in [
        (bpetok.ModelError, ValueError),
        (bpetok.InputError, ValueError),
        (bpetok.PackOptionsError, ValueError),
        (bpetok.ShardError, ValueError),
        (bpetok.OutputError, OSError),
    ]:
        assert issubclass(cls, bpetok.BpetokError) and issubclass(cls, builtin)
    from bpetok.dataset import ShardFormatError

    assert issubclass(ShardFormatError, bpetok.ShardError)


def test_model_error(tmp_path: Path) -> None:
    with pytest.raises(bpetok.ModelError) as caught:
        bpetok.Tokenizer.from_bytes(b"not a model")
    assert caught.value.kind == "model"
    with pytest.raises(FileNotFoundError):
        bpetok.Tokenizer.from_file(tmp_path / "missing.model")


@pytest.mark.parametrize(
    ("body", "kind", "line", "text"),
    [
        (b'{"text": "a"}\n{"text": 3}\n', "not_a_string", 2, "field 'text' is a number, not a string"),
        (b'{"text": "a"}\n\n{"nope": 1}\n', "missing_field", 3, "record has no field 'text'"),
        (b'{"text": "a"}\n[1]\n', "not_an_object", 2, "expected a JSON object, got an array"),
        (b"{not json\n", "invalid_json", 1, "invalid JSON"),
        (b'{"text": "\xff"}\n', "invalid_utf8", 1, "invalid UTF-8 (byte 0xff at column 11)"),
        (b'{"text": "\\ud800"}\n', "lone_surrogate", 1, "lone surrogate U+D800"),
    ],
)
def test_input_errors_carry_kind_and_place(
    tmp_path: Path, body: bytes, kind: str, line: int, text: str
) -> None:
    path = write(tmp_path / "in.jsonl", body)
    with pytest.raises(bpetok.InputError) as caught:
        bpetok.encode_files([path], tmp_path / "out.jsonl")
    err = caught.value
    assert isinstance(err, ValueError)
    assert (err.kind, err.file, err.line) == (kind, str(path), line)
    assert str(err).startswith(f"{path}:{line}: {text}")
    assert "--" not in str(err)  # no command-line flags in the library's messages
    assert not (tmp_path / "out.jsonl").exists()


def test_missing_input_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(bpetok.InputError) as caught:
        bpetok.encode_files([tmp_path / "missing.jsonl"], None)
    assert caught.value.kind == "not_found"
    assert str(caught.value) == f"{tmp_path / 'missing.jsonl'}: no such file or directory"


def test_pack_options_error_names_the_option(tmp_path: Path) -> None:
    path = write(tmp_path / "in.jsonl", b'{"text": "a"}\n')
    for options, name in [
        ({"seq_len": 1, "window": 0}, "seq_len"),
        ({"seq_len": 10**9, "window": 0}, "seq_len"),
        ({"seq_len": 16, "window": 0, "overlap": 16}, "overlap"),
        ({"seq_len": 16, "window": 0, "pad_id": 99999}, "pad_id"),
        ({"seq_len": 16, "window": 0, "samples_per_shard": 0}, "samples_per_shard"),
        ({"seq_len": 16, "window": 0, "pack_buffer": 0}, "pack_buffer"),
    ]:
        with pytest.raises(bpetok.PackOptionsError) as caught:
            bpetok.pack([path], tmp_path / "out", **options)  # type: ignore[arg-type]
        assert caught.value.option == name and caught.value.kind == "invalid_option"
        assert str(caught.value).startswith(f"{name}: ")
        assert not (tmp_path / "out").exists()


def test_shard_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "in.jsonl", b'{"text": "a b c"}\n')
    out = tmp_path / "out"
    result = bpetok.pack([path], out, seq_len=16, window=4)
    assert result.documents == 1 and result.shards == 1 and os.path.exists(out / "manifest.json")
    with pytest.raises(bpetok.ShardError) as caught:
        bpetok.pack([path], out, seq_len=16, window=4)
    assert caught.value.kind == "directory_in_use" and "overwrite" not in str(caught.value)
    assert bpetok.pack([path], out, seq_len=16, window=4, overwrite=True).documents == 1
    with pytest.raises(bpetok.ShardError) as caught:
        bpetok.inspect(tmp_path / "in.jsonl")
    assert isinstance(caught.value, ValueError)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_output_is_an_output_error(tmp_path: Path) -> None:
    path = write(tmp_path / "in.jsonl", b'{"text": "a"}\n')
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(bpetok.OutputError) as caught:
            bpetok.pack([path], ro / "out", seq_len=16, window=4)
        assert isinstance(caught.value, PermissionError) or caught.value.errno is not None
    finally:
        ro.chmod(0o700)


def test_progress_callback_exceptions_stop_the_run(tmp_path: Path) -> None:
    docs = "".join(json.dumps({"text": "word " * 2000}) + "\n" for _ in range(4000))
    path = write(tmp_path / "in.jsonl", docs.encode())
    seen: list[bpetok.Progress] = []

    class Stop(Exception):
        pass

    def progress(update: bpetok.Progress) -> None:
        seen.append(update)
        raise Stop

    with pytest.raises(Stop):
        bpetok.pack([path], tmp_path / "out", seq_len=64, window=16, progress=progress)
    assert seen and seen[0].total_bytes == path.stat().st_size
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_pack_result_and_manifest(tmp_path: Path) -> None:
    path = write(tmp_path / "in.jsonl", b'{"text": "Hello world"}\n{"text": ""}\n')
    result = bpetok.pack(path, tmp_path / "out", seq_len=16, window=4, num_threads=1)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert result.manifest == manifest
    assert manifest["tokenizer"]["sha256"] == bpetok.Tokenizer.default().sha256
    assert result.documents == 2 and result.tokens == len(bpetok.encode("Hello world")) + 2 + 2
    assert 0 <= result.padding_share <= 1 and result.context_share == 0
