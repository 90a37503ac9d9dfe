"""The llama.cpp runtime: forward, truncate, state, and every bad value stopped before C."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import load

from basics.errors import InvalidRequestError, ModelLoadError
from runtimes.llamacpp import LlamaCppRuntime
from runtimes.runtime import LoadOptions


def test_chunked_prefill_matches_one_batch(smollm2_path):
    small = load(smollm2_path, n_batch=16)
    big = load(smollm2_path)
    tokens = small.tokenize("The quick brown fox jumps over the lazy dog. " * 5, add_bos=True)
    assert len(tokens) > 40
    a = small.forward(tokens, 0, rows=[0, len(tokens) - 1])
    b = big.forward(tokens, 0, rows=[0, len(tokens) - 1])
    assert a.shape == (2, small.n_vocab) and small.n_past == len(tokens)
    assert np.argmax(a[1]) == np.argmax(b[1])
    assert np.abs(a - b).max() < 0.5


def test_truncate_then_forward_again(smollm2):
    tokens = smollm2.tokenize("Hello there, how are you today?", add_bos=True)
    first = smollm2.forward(tokens, 0)[0]
    assert smollm2.truncate(3) and smollm2.n_past == 3
    again = smollm2.forward(tokens[3:], 3)[0]
    assert np.argmax(first) == np.argmax(again)
    assert np.abs(first - again).max() < 0.5


def test_save_and_restore_state(smollm2):
    tokens = smollm2.tokenize("A state to keep for later.", add_bos=True)
    smollm2.forward(tokens[:-1], 0)
    state = smollm2.save_state()
    expected = smollm2.forward(tokens[-1:], smollm2.n_past)[0]
    smollm2.reset()
    smollm2.forward(smollm2.tokenize("Something else entirely", add_bos=True), 0)
    smollm2.restore_state(state, len(tokens) - 1)
    assert smollm2.n_past == len(tokens) - 1
    got = smollm2.forward(tokens[-1:], smollm2.n_past)[0]
    assert np.allclose(expected, got, atol=1e-3)


def test_tokenize_roundtrip_and_specials(smollm2):
    text = "Hello <|im_end|> wörld 👋"
    tokens = smollm2.tokenize(text, add_bos=False)
    assert smollm2.detokenize(tokens) == text
    assert smollm2.special.end_of_turn
    assert smollm2.chat_template and "im_start" in smollm2.chat_template


@pytest.mark.parametrize("call,match", [
    (lambda rt: rt.forward([], 0), "at least one"),
    (lambda rt: rt.forward([1, 2], 5), "must append"),
    (lambda rt: rt.forward([rt.n_vocab], 0), "outside"),
    (lambda rt: rt.forward([-1], 0), "outside"),
    (lambda rt: rt.forward([1] * (rt.n_ctx + 1), 0), "do not fit"),
    (lambda rt: rt.forward([1, 2], 0, rows=[2]), "rows"),
    (lambda rt: rt.forward([1, 2], 0, rows=[1, 1]), "rows"),
    (lambda rt: rt.truncate(-1), "n_keep"),
    (lambda rt: rt.token_bytes(10 ** 9), "outside"),
    (lambda rt: rt.restore_state(b"garbage", 10 ** 7), "does not fit"),
])
def test_bad_values_never_reach_llama_cpp(smollm2, call, match):
    with pytest.raises(InvalidRequestError, match=match):
        call(smollm2)
    assert smollm2.n_past == 0
    assert smollm2.forward([1, 2, 3], 0).shape == (1, smollm2.n_vocab)  # still alive and consistent


def test_a_corrupt_saved_state_is_refused(smollm2):
    smollm2.forward([1, 2, 3], 0)
    with pytest.raises(Exception, match="could not restore|expected number"):
        smollm2.restore_state(b"\x00" * 64, 3)
    assert smollm2.n_past == 0


@pytest.mark.parametrize("make,match", [
    (lambda tmp, src: tmp / "nope.gguf", "not found"),
    (lambda tmp, src: tmp, "folder"),
    (lambda tmp, src: _write(tmp / "text.gguf", b"hello world, not a model"), "not a GGUF"),
    (lambda tmp, src: _write(tmp / "half.gguf", src.read_bytes()[: src.stat().st_size // 2]), "cut-off"),
    (lambda tmp, src: _write(tmp / "head.gguf", src.read_bytes()[:4096]), "not a readable GGUF"),
    (lambda tmp, src: _write(tmp / "empty.gguf", b""), "not a GGUF"),
])
def test_bad_model_files_are_clear_errors(tmp_path, smollm2_path, make, match):
    with pytest.raises(ModelLoadError, match=match):
        LlamaCppRuntime(make(tmp_path, smollm2_path))


@pytest.mark.parametrize("options,match", [
    (dict(n_ctx=-1), "positive"),
    (dict(n_ctx=10 ** 6), "beyond"),
    (dict(n_batch=0), "Batch"),
    (dict(n_threads=0), "Thread"),
    (dict(n_threads=100_000), "Thread"),
    (dict(n_gpu_layers=-2), "GPU layers"),
])
def test_bad_load_options_are_clear_errors(smollm2_path, options, match):
    with pytest.raises(ModelLoadError, match=match):
        LlamaCppRuntime(smollm2_path, LoadOptions(**options))


def test_context_beyond_training_when_asked_for(smollm2_path):
    probe = load(smollm2_path, n_ctx=64)
    beyond = probe.n_ctx_train + 256
    probe.close()
    rt = LlamaCppRuntime(smollm2_path, LoadOptions(n_ctx=beyond, allow_context_beyond_training=True))
    assert rt.n_ctx >= beyond
    rt.close()


def test_a_copy_with_another_name_loads(tmp_path, smollm2_path):
    copy = tmp_path / "renamed.gguf"
    shutil.copy(smollm2_path, copy)
    rt = LlamaCppRuntime(copy, LoadOptions(n_ctx=128))
    assert rt.n_vocab > 1000
    rt.close()


def _write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("model", ["smollm2", "gemma"])
def test_batched_rows_match_single_token_logits(model, smollm2_path, gemma_path):
    """Each requested row is the right position's logits: a batch of 4 agrees with one token at a time,
    up to llama.cpp's kernel differences, which stay below the near-tie margin the tests allow."""
    from conftest import NEAR_TIE

    rt = load(smollm2_path if model == "smollm2" else gemma_path)
    prompt = rt.tokenize("The history of the printing press begins", add_bos=True)
    logits = rt.forward(prompt, 0)[0]
    seq, single = [], []
    for _ in range(40):
        seq.append(int(np.argmax(logits)))
        logits = rt.forward(seq[-1:], rt.n_past)[0]
        single.append(logits)
    rt.truncate(len(prompt))
    batched = [row for i in range(0, 40, 4) for row in rt.forward(seq[i:i + 4], rt.n_past, rows=range(4))]
    for a, b in zip(single, batched):
        top1, top2 = np.argsort(a)[-1], np.argsort(a)[-2]
        assert abs((a[top1] - a[top2]) - (b[top1] - b[top2])) < NEAR_TIE
        assert np.abs(a - b).max() < 3.0  # a row from another position would differ by far more
    rt.close()


def test_load_progress_is_reported_and_a_listener_can_cancel_the_load(smollm2_path, tmp_path):
    seen = []
    rt = LlamaCppRuntime(smollm2_path, LoadOptions(n_ctx=256, on_progress=seen.append))
    rt.close()
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)

    def broken(progress):
        raise RuntimeError("a listener bug")  # must not abort the load

    LlamaCppRuntime(smollm2_path, LoadOptions(n_ctx=256, on_progress=broken)).close()
    fresh = tmp_path / "fresh.gguf"  # never loaded before: the child-process test load runs, listener and all
    shutil.copy(smollm2_path, fresh)
    LlamaCppRuntime(fresh, LoadOptions(n_ctx=256, on_progress=broken)).close()
    with pytest.raises(ModelLoadError, match="cancelled"):
        LlamaCppRuntime(smollm2_path, LoadOptions(n_ctx=256, on_progress=lambda progress: False))


def test_llama_cpp_pythons_own_llama_gets_the_amx_guard_too():
    """ggml's AMX matmul in 0.3.36 crashes on multi-token batches: every Llama() in the process (the embedder's, a
    test's reference) loads without the extra buffer types that route weights to it, on CPUs with AMX."""
    import llama_cpp.llama_cpp as low

    from runtimes.llama_library import init_backend as _init_backend, cpu_has_amx

    _init_backend()
    assert low.llama_model_default_params().use_extra_bufts == (not cpu_has_amx())
