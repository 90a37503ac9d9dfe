"""GGUF -> MLX conversion, and an MLX model whose cache cannot roll back."""
from __future__ import annotations

import json
import shutil

import pytest
from conftest import load_mlx, run

from basics.errors import ModelLoadError
from engine.engine import Engine
from engine.events import GenerationRequest
from engine.sampling import SamplingParams
from models.convert import ConversionError, convert_gguf_to_mlx, mlx_name

GREEDY = SamplingParams(temperature=0)


def test_the_converted_folder_holds_the_gguf_weights_unchanged(smollm2_path, smollm2_mlx_path):
    import mlx.core as mx

    config = json.loads((smollm2_mlx_path / "config.json").read_text())
    assert config["rope_traditional"] is True and config["tie_word_embeddings"] is True
    assert config["quantization"]["bits"] == 4 and config["quantization"]["group_size"] == 32
    # the Q8_0 embedding stays 8-bit, the F32 norms unquantized
    assert config["quantization"]["model.embed_tokens"] == {"group_size": 32, "bits": 8}
    assert config["quantization"]["model.norm"] is False
    src = mx.load(str(smollm2_path))
    out = mx.load(str(smollm2_mlx_path / "model.safetensors"))
    assert len(out) == len(src)
    for name in ("blk.0.attn_q.weight", "blk.0.attn_q.scales", "blk.29.ffn_down.biases", "token_embd.weight"):
        assert mx.array_equal(src[name], out[mlx_name(name)]).item(), name


def test_k_quants_and_other_architectures_get_clear_errors(gemma_path, tmp_path):
    with pytest.raises(ConversionError, match=r"Q4_K.*MLX cannot read"):
        convert_gguf_to_mlx(gemma_path, tmp_path / "gemma")
    assert not (tmp_path / "gemma").exists()
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


def test_bad_paths_are_clear_errors(smollm2_mlx_path, tmp_path):
    not_gguf = tmp_path / "x.gguf"
    not_gguf.write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="not a GGUF"):
        convert_gguf_to_mlx(not_gguf, tmp_path / "out")
    with pytest.raises(ConversionError, match="already exists"):
        convert_gguf_to_mlx(not_gguf, smollm2_mlx_path)
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_mlx(tmp_path)
    with pytest.raises(ModelLoadError, match="is a file"):
        load_mlx(not_gguf)
    with pytest.raises(ModelLoadError, match="--threads is for llama.cpp"):
        load_mlx(smollm2_mlx_path, n_threads=2)


def test_a_sliding_window_model_drafts_through_marks_and_matches_plain_decoding(smollm2_mlx_path, tmp_path):
    """Sliding-window layers use mlx-lm's rotating cache, which cannot always be trimmed: each pass of several
    tokens keeps a mark, so a rejected draft goes back to it and computes its accepted tokens again."""
    from conftest import assert_same_up_to_near_tie, reference_greedy

    folder = tmp_path / "sliding"
    shutil.copytree(smollm2_mlx_path, folder)
    config = json.loads((folder / "config.json").read_text())
    n = config["num_hidden_layers"]
    config.update(layer_types=["full_attention"] + ["sliding_attention"] * (n - 1), sliding_window=16)
    (folder / "config.json").write_text(json.dumps(config))
    rt = load_mlx(folder)
    try:
        assert rt.can_truncate is False and rt.rollback_tokens == 18 and not rt.load_notes
        engine = Engine(rt)  # prompt lookup on by default, drafts of up to 16 tokens
        assert engine.options.prompt_lookup and engine.options.draft_max == 16 and not engine.notes
        text = "red green blue red green blue red green"
        _, ids, fin = run(engine, GenerationRequest(prompt=text, sampling=GREEDY, max_tokens=24, prompt_lookup=True))
        assert fin.reason == "length" and len(ids) == 24 and fin.stats.drafted_tokens > 0
        reference, gaps = reference_greedy(rt, engine.cached_tokens[: fin.stats.prompt_tokens], 24)
        assert_same_up_to_near_tie(reference, gaps, ids, rt.special.end_of_turn)
        # a changed prompt shares nothing the window still holds: it is computed again, correctly
        _, _, fin2 = run(engine, GenerationRequest(prompt="blue sky", sampling=GREEDY, max_tokens=2))
        assert fin2.stats.cached_tokens == 0 and fin2.reason == "length"
        assert rt.truncate(rt.n_past) and rt.truncate(1)  # back into the last pass of several tokens: its mark
        rt.forward([100], 1)  # one token: no mark, so it cannot be taken back
        assert not rt.truncate(1) and rt.n_past == 2
    finally:
        rt.close()
