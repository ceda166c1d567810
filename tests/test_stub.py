"""The type information bpetok ships: the native module's stub matches the module, and user code that
calls the public API type-checks under ``mypy --strict`` (while a misuse does not)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

USER_CODE = """
    from __future__ import annotations

    import numpy as np
    from typing import Any

    from typing_extensions import assert_type

    import bpetok

    ids = bpetok.encode("Hello world", add_bos=True)
    assert_type(ids, list[int])
    assert_type(bpetok.encode(b"raw bytes"), list[int])
    assert_type(bpetok.decode(ids), str)
    assert_type(bpetok.decode(np.array(ids)), str)

    tok = bpetok.Tokenizer.from_file("tokenizer.model")
    assert_type(tok, bpetok.Tokenizer)
    assert_type(bpetok.Tokenizer.default(), bpetok.Tokenizer)
    assert_type(bpetok.Tokenizer.from_bytes(tok.model_bytes), bpetok.Tokenizer)
    assert_type(tok.encode_batch(["a", b"b"], num_threads=2), list[list[int]])
    assert_type(tok.encode_as_pieces("a"), list[str])
    assert_type(tok.encode_to_numpy("a"), np.ndarray)
    flat, offsets = tok.encode_batch_to_numpy(["a", "b"], add_eos=True)
    assert_type(flat, np.ndarray)
    assert_type(tok.decode_batch([[1, 2], ids], num_threads=None), list[str])
    assert_type(bpetok.count("a", add_bos=True), int)
    assert_type(tok.count(b"a"), int)
    assert_type(tok.count_batch(["a", b"b"], num_threads=2), np.ndarray)
    assert_type(tok.id_to_piece(5), str)
    assert_type(tok.piece_to_id("a"), int)
    assert_type(tok.vocab_size() + tok.bos_id() + tok.eos_id() + tok.unk_id() + tok.pad_id() + len(tok), int)
    assert_type(bpetok.__version__, str)

    try:
        bpetok.Tokenizer.from_file("bad.model")
    except bpetok.ModelError as err:
        error: ValueError = err
        base: bpetok.BpetokError = err
    assert_type(tok.sha256, str)

    def on_progress(p: bpetok.Progress) -> None:
        assert_type(p.total_bytes, int | None)

    result = bpetok.pack(["corpus/"], "shards", seq_len=4096, window=4096, progress=on_progress)
    assert_type(result, bpetok.PackResult)
    assert_type(result.padding_share, float)
    assert_type(bpetok.encode_files("a.jsonl", "ids.jsonl", format="megatron"), bpetok.EncodeResult)
    assert_type(bpetok.decode_files(["ids.jsonl"], None), bpetok.DecodeResult)
    counted = bpetok.count_files(["corpus/"], eos=True, num_threads=2)
    assert_type(counted, bpetok.CountResult)
    assert_type(counted.per_input[0], bpetok.InputCount)
    assert_type(counted.tokens_per_byte, float)
    assert_type(bpetok.verify("shards", tokenizer=tok).ok, bool)
    assert_type(bpetok.show_sample("shards", 0), dict[str, Any])
    try:
        bpetok.pack("a.jsonl", "out", seq_len=1, window=0, errors="replace", input_format="parquet")
    except bpetok.InputError as err:
        assert_type(err.line, int | None)
        value_error: ValueError = err
    except bpetok.PackOptionsError as err:
        assert_type(err.option, str | None)
    except bpetok.OutputError as err:
        os_error: OSError = err
"""

MISUSE = """
    import bpetok

    bpetok.encode(5)
    n: str = bpetok.Tokenizer.default().vocab_size()
    bpetok.pack(["a"], "out", seq_len=16, window=4, errors="ignore")
"""


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_stubtest_native_module() -> None:
    result = run("mypy.stubtest", "bpetok._bpetok", cwd=ROOT)
    assert result.returncode == 0, f"stubtest failed:\n{result.stdout}\n{result.stderr}"


def test_user_code_type_checks_strict(tmp_path: Path) -> None:
    (tmp_path / "user.py").write_text(textwrap.dedent(USER_CODE))
    result = run("mypy", "--strict", "--no-incremental", "user.py", cwd=tmp_path)
    assert result.returncode == 0, f"mypy --strict on user code failed:\n{result.stdout}\n{result.stderr}"


def test_misuse_is_a_type_error(tmp_path: Path) -> None:
    (tmp_path / "misuse.py").write_text(textwrap.dedent(MISUSE))
    result = run("mypy", "--strict", "--no-incremental", "misuse.py", cwd=tmp_path)
    assert result.returncode == 1, f"mypy accepted a misuse of the API:\n{result.stdout}\n{result.stderr}"
    assert "misuse.py:4: error" in result.stdout, result.stdout
    assert "misuse.py:5: error" in result.stdout, result.stdout
    assert "misuse.py:6: error" in result.stdout, result.stdout  # errors is a Literal


def test_package_type_checks_strict() -> None:
    result = run("mypy", "--strict", "--no-incremental", "python/bpetok", cwd=ROOT)
    assert result.returncode == 0, f"mypy --strict python/bpetok failed:\n{result.stdout}\n{result.stderr}"
