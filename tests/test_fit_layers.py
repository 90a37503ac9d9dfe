"""Fit that knows the architecture: full-attention layers grow with the context, sliding-window layers stop at
their window, recurrent layers keep a fixed state. The figures are checked against what llama.cpp allocates."""
from __future__ import annotations

import pytest
from tiny_models import write_lfm2, write_mamba2, write_nemotron_h, write_qwen35

from models.info import describe_model
from runtimes.llamacpp import LlamaCppRuntime
from runtimes.runtime import LoadOptions


@pytest.fixture(scope="module")
def models(smollm2_path, gemma_path, tmp_path_factory):
    return {"plain": smollm2_path, "sliding window": gemma_path,
            "recurrent": write_mamba2(smollm2_path, tmp_path_factory.mktemp("tiny") / "mamba2.gguf"),
            "hybrid": write_lfm2(smollm2_path, tmp_path_factory.mktemp("tiny") / "lfm2.gguf"),
            "gated deltanet": write_qwen35(smollm2_path, tmp_path_factory.mktemp("tiny") / "qwen35.gguf"),
            "mamba hybrid": write_nemotron_h(smollm2_path, tmp_path_factory.mktemp("tiny") / "nemotron_h.gguf")}


def _allocated(path, **options) -> int:
    """What llama.cpp allocated for the caches of `path` loaded with `options`."""
    rt = LlamaCppRuntime(path, LoadOptions(**options))
    try:
        return rt.cache_bytes
    finally:
        rt.close()


@pytest.mark.parametrize("slots", [1, 4])
@pytest.mark.parametrize("kind", ["plain", "sliding window", "recurrent", "hybrid", "gated deltanet", "mamba hybrid"])
def test_the_cache_figure_is_within_ten_percent_of_llama_cpps_allocation(models, kind, slots):
    """With several slots the context's cells are shared; each slot keeps its own window and state."""
    info = describe_model(models[kind])
    allocated = _allocated(models[kind], n_ctx=4096, slots=slots)
    assert allocated > 0
    assert abs(info.kv_bytes(4096, slots=slots) - allocated) <= 0.1 * allocated, (info, allocated)


def test_each_layer_kind_is_counted_as_such(models):
    plain = describe_model(models["plain"])
    assert plain.window == 0 and plain.state_bytes == 0
    assert plain.kv_bytes(8192) == 2 * plain.kv_bytes(4096)  # all of it grows with the context
    gemma = describe_model(models["sliding window"])
    assert gemma.window == 512 and gemma.window_bytes_per_token == 5 * gemma.kv_bytes_per_token  # 15 of 18 slide
    assert gemma.kv_bytes(32768) < 0.25 * 18 / 3 * gemma.kv_bytes_per_token * 32768  # far below all-full
    mamba = describe_model(models["recurrent"])
    assert mamba.kv_bytes_per_token == 0 and mamba.window == 0 and mamba.state_bytes > 0
    assert mamba.kv_bytes(4096) == mamba.kv_bytes(64)  # a fixed state, whatever the context
    lfm2 = describe_model(models["hybrid"])  # two attention layers grow, two convolution layers do not
    assert lfm2.kv_bytes_per_token == 2 * 2 * 16 * 2 * 2 and lfm2.state_bytes > 0


def test_hybrid_states_count_their_rollback_snapshots_and_only_recurrent_layers(models):
    """Qwen3.5 and Nemotron-H keep llama.cpp's snapshots of the recurrent state (one per token a draft may roll
    back); Nemotron-H's feed-forward-only layers have neither KV nor state."""
    from runtimes.llama_library import RECURRENT_SNAPSHOTS

    qwen = describe_model(models["gated deltanet"])  # 2 attention layers of 8; 6 Gated DeltaNet layers
    assert qwen.kv_bytes_per_token == 2 * 2 * 16 * 2 * 2
    conv, delta = 3 * (2 * 32 + 64), 16 * 64  # (kernel - 1) x (2 key dims + value dim); key head x value dim
    assert qwen.state_bytes == 6 * 4 * (conv + delta) * (1 + RECURRENT_SNAPSHOTS)
    nemotron = describe_model(models["mamba hybrid"])  # 2 Mamba-2, 2 feed-forward, 2 attention layers
    conv, ssm = 3 * (128 + 2 * 16), 16 * 128
    assert nemotron.state_bytes == 2 * 4 * (conv + ssm) * (1 + RECURRENT_SNAPSHOTS)
    assert nemotron.kv_bytes_per_token == 2 * 2 * 16 * 2 * 2
    mamba = describe_model(models["recurrent"])  # llama.cpp keeps no snapshots for pure Mamba-2
    assert mamba.state_bytes == 2 * 4 * (3 * (128 + 2 * 16) + 16 * 128)


@pytest.mark.parametrize("kv_type", ["q8_0", "q4_0"])
@pytest.mark.parametrize("kind", ["plain", "sliding window"])
def test_a_quantized_kv_cache_is_what_llama_cpp_allocates_and_what_the_fit_counts(models, kind, kv_type):
    """The KV cache type reaches llama.cpp (its allocation shrinks), and the figure fit and doctor use follows it."""
    info = describe_model(models[kind])
    allocated = _allocated(models[kind], n_ctx=4096, kv_cache_type=kv_type)
    full = _allocated(models[kind], n_ctx=4096)
    assert 0 < allocated < (0.6 if kv_type == "q8_0" else 0.35) * full + info.state_bytes
    assert abs(info.kv_bytes(4096, kv_type=kv_type) - allocated) <= 0.1 * allocated, (info, allocated)


def test_a_quantized_kv_cache_without_flash_attention_is_refused_clearly():
    from basics.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="q4_0 KV cache needs flash attention"):
        LoadOptions(kv_cache_type="q4_0", flash_attn=False).validate()
    with pytest.raises(ModelLoadError, match="KV cache type must be one of f16, q8_0, q4_0"):
        LoadOptions(kv_cache_type="q2_k").validate()


def test_a_quantized_kv_cache_a_model_cannot_take_is_a_clear_load_error(models):
    """q8_0 blocks are 32 wide: a model with 16-wide heads (the tiny LFM2) is refused by llama.cpp, in words."""
    from basics.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="K cache type q8_0 with block size 32 does not divide"):
        LlamaCppRuntime(models["hybrid"], LoadOptions(n_ctx=512, kv_cache_type="q8_0"))
