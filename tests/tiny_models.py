"""Tiny random-weight GGUFs of architectures no small PyPI model has (recurrent and hybrid layers), with the
starter's vocabulary and chat template: they exercise loading, reuse, rollback and lookup exactly, not quality."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _copy_tokenizer(reader, writer) -> None:
    import gguf

    for field in reader.fields.values():
        if not field.name.startswith("tokenizer."):
            continue
        kind = field.types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            sub = field.types[1]
            values = [field.parts[i].tolist()[0] if sub != gguf.GGUFValueType.STRING else bytes(field.parts[i]).decode()
                      for i in field.data]
            writer.add_array(field.name, values)
        elif kind == gguf.GGUFValueType.STRING:
            writer.add_string(field.name, bytes(field.parts[field.data[0]]).decode())
        else:
            writer.add_key_value(field.name, field.parts[field.data[0]].tolist()[0], kind)


def _writer(vocab_source: Path, path: Path, arch: str):
    import gguf

    reader = gguf.GGUFReader(vocab_source, "r")
    w = gguf.GGUFWriter(path, arch=arch)
    _copy_tokenizer(reader, w)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    return w, len(reader.fields["tokenizer.ggml.tokens"].data)


def _finish(w, path: Path) -> Path:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_lfm2(vocab_source: Path, path: Path, *, n_embd: int = 64, seed: int = 0) -> Path:
    """A four-layer LFM2: short convolutions in layers 0 and 2, attention in 1 and 3 (a hybrid: the convolutions'
    state cannot be cut back; the attention layers' cache can)."""
    rng = np.random.default_rng(seed)
    w, n_vocab = _writer(vocab_source, path, "lfm2")
    n_head, n_head_kv, n_ff, l_cache = 4, 2, 128, 3
    kinds = ["conv", "attn", "conv", "attn"]
    w.add_context_length(4096)
    w.add_embedding_length(n_embd)
    w.add_block_count(len(kinds))
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv([n_head_kv if k == "attn" else 0 for k in kinds])
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_uint32("lfm2.shortconv.l_cache", l_cache)
    head = n_embd // n_head

    def t(name, *shape, scale=0.2):
        w.add_tensor(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    t("token_embd.weight", n_vocab, n_embd, scale=1.0)
    w.add_tensor("token_embd_norm.weight", np.ones(n_embd, np.float32))
    for i, kind in enumerate(kinds):
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, np.float32))
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, np.float32))
        t(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
        if kind == "attn":
            w.add_tensor(f"blk.{i}.attn_q_norm.weight", np.ones(head, np.float32))
            w.add_tensor(f"blk.{i}.attn_k_norm.weight", np.ones(head, np.float32))
            t(f"blk.{i}.attn_q.weight", n_embd, n_embd)
            t(f"blk.{i}.attn_k.weight", n_head_kv * head, n_embd)
            t(f"blk.{i}.attn_v.weight", n_head_kv * head, n_embd)
            t(f"blk.{i}.attn_output.weight", n_embd, n_embd)
        else:
            t(f"blk.{i}.shortconv.conv.weight", n_embd, l_cache)
            t(f"blk.{i}.shortconv.in_proj.weight", 3 * n_embd, n_embd)
            t(f"blk.{i}.shortconv.out_proj.weight", n_embd, n_embd)
    return _finish(w, path)


def _mamba2_layer(w, t, rng, i: int, *, n_embd: int, d_inner: int, d_state: int, n_heads: int, n_group: int,
                  d_conv: int) -> None:
    """One Mamba-2 layer's tensors (Mamba-2 and Nemotron-H write them alike)."""
    conv_dim = d_inner + 2 * n_group * d_state
    t(f"blk.{i}.ssm_in.weight", d_inner + conv_dim + n_heads, n_embd)
    t(f"blk.{i}.ssm_conv1d.weight", conv_dim, d_conv)
    t(f"blk.{i}.ssm_conv1d.bias", conv_dim)
    t(f"blk.{i}.ssm_dt.bias", n_heads)
    w.add_tensor(f"blk.{i}.ssm_a", -np.exp(rng.standard_normal((n_heads, 1))).astype(np.float32))
    w.add_tensor(f"blk.{i}.ssm_d", np.ones((n_heads, 1), np.float32))
    w.add_tensor(f"blk.{i}.ssm_norm.weight", np.ones((n_group, d_inner // n_group), np.float32))
    t(f"blk.{i}.ssm_out.weight", n_embd, d_inner)


def write_mamba2(vocab_source: Path, path: Path, *, n_embd: int = 64, n_layer: int = 2, seed: int = 0) -> Path:
    """A two-layer Mamba-2 (every layer recurrent: no position of its state can be cut back)."""
    import gguf

    rng = np.random.default_rng(seed)
    reader = gguf.GGUFReader(vocab_source, "r")
    n_vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    d_inner, d_state, n_heads, n_group, d_conv = 2 * n_embd, 16, 4, 1, 4
    w = gguf.GGUFWriter(path, arch="mamba2")
    w.add_context_length(4096)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_ssm_conv_kernel(d_conv)
    w.add_ssm_inner_size(d_inner)
    w.add_ssm_state_size(d_state)
    w.add_ssm_time_step_rank(n_heads)
    w.add_ssm_group_count(n_group)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    _copy_tokenizer(reader, w)

    def t(name, *shape, scale=0.2):
        w.add_tensor(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    t("token_embd.weight", n_vocab, n_embd, scale=1.0)
    w.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, np.float32))
        _mamba2_layer(w, t, rng, i, n_embd=n_embd, d_inner=d_inner, d_state=d_state, n_heads=n_heads,
                      n_group=n_group, d_conv=d_conv)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_qwen35(vocab_source: Path, path: Path, *, n_embd: int = 64, n_layer: int = 8, seed: int = 0,
                 mtp: bool = False, jitter: float = 0.0) -> Path:
    """An eight-layer Qwen3.5: Gated DeltaNet (linear attention with a fixed recurrent state) in three layers of
    four, full attention in every fourth, as in the real 0.8B to 27B models. `mtp`: with one multi-token-prediction
    block after them (`qwen35.nextn_predict_layers`, blk.{n_layer}.nextn.*), as the real models ship it. `jitter`:
    the same model (same seed) with that much noise on its weights: one that agrees with it often, not always."""
    noise = np.random.default_rng(seed + 1000)
    rng = np.random.default_rng(seed)
    w, n_vocab = _writer(vocab_source, path, "qwen35")
    n_head, n_head_kv, head, n_ff, d_conv = 4, 2, 16, 128, 4
    k_heads, v_heads, head_kv_dim = 2, 4, 16  # the DeltaNet's key heads, value heads, and their size
    key_dim, value_dim = k_heads * head_kv_dim, v_heads * head_kv_dim
    w.add_context_length(4096)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer + mtp)
    if mtp:
        w.add_uint32("qwen35.nextn_predict_layers", 1)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_key_length(head)
    w.add_value_length(head)
    w.add_rope_dimension_count(head)
    w.add_array("qwen35.rope.dimension_sections", [3, 3, 2, 0])
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_uint32("qwen35.full_attention_interval", 4)
    w.add_ssm_conv_kernel(d_conv)
    w.add_ssm_inner_size(value_dim)
    w.add_ssm_state_size(head_kv_dim)
    w.add_ssm_time_step_rank(v_heads)
    w.add_ssm_group_count(k_heads)

    def t(name, *shape, scale=0.2):
        w.add_tensor(name, ((rng.standard_normal(shape) + jitter * noise.standard_normal(shape)) * scale
                            ).astype(np.float32))

    t("token_embd.weight", n_vocab, n_embd, scale=1.0)
    w.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    for i in range(n_layer + mtp):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, np.float32))
        w.add_tensor(f"blk.{i}.post_attention_norm.weight", np.ones(n_embd, np.float32))
        t(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
        if i == n_layer:  # the MTP block: the token's embedding and the model's last hidden state, joined
            t(f"blk.{i}.nextn.eh_proj.weight", n_embd, 2 * n_embd)
            w.add_tensor(f"blk.{i}.nextn.enorm.weight", np.ones(n_embd, np.float32))
            w.add_tensor(f"blk.{i}.nextn.hnorm.weight", np.ones(n_embd, np.float32))
        if (i + 1) % 4 == 0 or i == n_layer:  # full attention, its query carrying a gate
            t(f"blk.{i}.attn_q.weight", 2 * n_head * head, n_embd)
            t(f"blk.{i}.attn_k.weight", n_head_kv * head, n_embd)
            t(f"blk.{i}.attn_v.weight", n_head_kv * head, n_embd)
            t(f"blk.{i}.attn_output.weight", n_embd, n_head * head)
            w.add_tensor(f"blk.{i}.attn_q_norm.weight", np.ones(head, np.float32))
            w.add_tensor(f"blk.{i}.attn_k_norm.weight", np.ones(head, np.float32))
        else:
            t(f"blk.{i}.attn_qkv.weight", 2 * key_dim + value_dim, n_embd)
            t(f"blk.{i}.attn_gate.weight", value_dim, n_embd)
            t(f"blk.{i}.ssm_conv1d.weight", 2 * key_dim + value_dim, d_conv)
            t(f"blk.{i}.ssm_dt.bias", v_heads)
            w.add_tensor(f"blk.{i}.ssm_a", -np.exp(rng.standard_normal(v_heads)).astype(np.float32))
            t(f"blk.{i}.ssm_beta.weight", v_heads, n_embd)
            t(f"blk.{i}.ssm_alpha.weight", v_heads, n_embd)
            w.add_tensor(f"blk.{i}.ssm_norm.weight", np.ones(head_kv_dim, np.float32))
            t(f"blk.{i}.ssm_out.weight", n_embd, value_dim)
    return _finish(w, path)


def write_glm4_moe(vocab_source: Path, path: Path, *, n_embd: int = 64, n_layer: int = 2, seed: int = 0) -> Path:
    """A GLM-4.5-style model: dense attention layers, then one MTP block whose feed-forward is a mixture of four
    experts (two used) and a shared one, as GLM-4.5/4.6/4.7 ship their MTP layer."""
    rng = np.random.default_rng(seed)
    w, n_vocab = _writer(vocab_source, path, "glm4moe")
    n_head, n_head_kv, head, n_ff, n_ff_exp, n_expert = 4, 2, 16, 128, 32, 4
    w.add_context_length(4096)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer + 1)
    w.add_uint32("glm4moe.nextn_predict_layers", 1)
    w.add_uint32("glm4moe.leading_dense_block_count", n_layer)  # the trunk dense, the MTP block a mixture
    w.add_feed_forward_length(n_ff)
    w.add_uint32("glm4moe.expert_feed_forward_length", n_ff_exp)
    w.add_expert_count(n_expert)
    w.add_expert_used_count(2)
    w.add_uint32("glm4moe.expert_shared_count", 1)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_key_length(head)
    w.add_value_length(head)
    w.add_rope_dimension_count(head // 2)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)

    def t(name, *shape, scale=0.2):
        w.add_tensor(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    t("token_embd.weight", n_vocab, n_embd, scale=1.0)
    w.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    for i in range(n_layer + 1):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, np.float32))
        w.add_tensor(f"blk.{i}.post_attention_norm.weight", np.ones(n_embd, np.float32))
        t(f"blk.{i}.attn_q.weight", n_head * head, n_embd)
        t(f"blk.{i}.attn_k.weight", n_head_kv * head, n_embd)
        t(f"blk.{i}.attn_v.weight", n_head_kv * head, n_embd)
        t(f"blk.{i}.attn_output.weight", n_embd, n_head * head)
        if i < n_layer:
            t(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
            t(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
            t(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
            continue
        t(f"blk.{i}.ffn_gate_inp.weight", n_expert, n_embd)
        w.add_tensor(f"blk.{i}.exp_probs_b.bias", np.zeros(n_expert, np.float32))
        t(f"blk.{i}.ffn_gate_exps.weight", n_expert, n_ff_exp, n_embd)
        t(f"blk.{i}.ffn_up_exps.weight", n_expert, n_ff_exp, n_embd)
        t(f"blk.{i}.ffn_down_exps.weight", n_expert, n_embd, n_ff_exp)
        t(f"blk.{i}.ffn_gate_shexp.weight", n_ff_exp, n_embd)
        t(f"blk.{i}.ffn_up_shexp.weight", n_ff_exp, n_embd)
        t(f"blk.{i}.ffn_down_shexp.weight", n_embd, n_ff_exp)
        t(f"blk.{i}.nextn.eh_proj.weight", n_embd, 2 * n_embd)
        w.add_tensor(f"blk.{i}.nextn.enorm.weight", np.ones(n_embd, np.float32))
        w.add_tensor(f"blk.{i}.nextn.hnorm.weight", np.ones(n_embd, np.float32))
    return _finish(w, path)


def write_mimo2(vocab_source: Path, path: Path, *, n_embd: int = 64, n_layer: int = 2, n_mtp: int = 2,
                seed: int = 0) -> Path:
    """A MiMo-V2-style model with `n_mtp` MTP blocks after its layers, which llama.cpp chains: block i drafts the
    i-th token ahead (as Step-3.5 and Hunyuan ship theirs). Fused QKV, dense feed-forward, a sliding window in the first layer."""
    rng = np.random.default_rng(seed)
    w, n_vocab = _writer(vocab_source, path, "mimo2")
    n_head, n_head_kv, head, n_ff = 4, 2, 16, 128
    w.add_context_length(4096)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer + n_mtp)
    w.add_uint32("mimo2.nextn_predict_layers", n_mtp)
    w.add_feed_forward_length(n_ff)
    w.add_uint32("mimo2.expert_feed_forward_length", n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_key_length(head)
    w.add_value_length(head)
    w.add_rope_dimension_count(head)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_sliding_window(128)
    w.add_array("mimo2.attention.sliding_window_pattern", [True] + [False] * (n_layer + n_mtp - 1))

    def t(name, *shape, scale=0.2):
        w.add_tensor(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    t("token_embd.weight", n_vocab, n_embd, scale=1.0)
    w.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    t("output.weight", n_vocab, n_embd)
    for i in range(n_layer + n_mtp):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, np.float32))
        t(f"blk.{i}.attn_qkv.weight", (n_head + 2 * n_head_kv) * head, n_embd)
        t(f"blk.{i}.attn_output.weight", n_embd, n_head * head)
        t(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
        if i >= n_layer:
            t(f"blk.{i}.nextn.eh_proj.weight", n_embd, 2 * n_embd)
            w.add_tensor(f"blk.{i}.nextn.enorm.weight", np.ones(n_embd, np.float32))
            w.add_tensor(f"blk.{i}.nextn.hnorm.weight", np.ones(n_embd, np.float32))
    return _finish(w, path)


def write_nemotron_h(vocab_source: Path, path: Path, *, n_embd: int = 64, seed: int = 0) -> Path:
    """A six-layer Nemotron-H: Mamba-2 layers, feed-forward-only layers and attention layers, each its own kind
    (a layer with neither KV heads nor a feed-forward is recurrent)."""
    rng = np.random.default_rng(seed)
    w, n_vocab = _writer(vocab_source, path, "nemotron_h")
    kinds = ["mamba", "ffn", "attn", "mamba", "ffn", "attn"]
    n_head, n_head_kv, n_ff = 4, 2, 128
    d_inner, d_state, n_ssm_head, n_group, d_conv = 2 * n_embd, 16, 4, 1, 4
    head = n_embd // n_head
    w.add_context_length(4096)
    w.add_embedding_length(n_embd)
    w.add_block_count(len(kinds))
    w.add_head_count(n_head)  # one figure, as the real files write it; the KV heads say which layers attend
    w.add_head_count_kv([n_head_kv if k == "attn" else 0 for k in kinds])
    w.add_feed_forward_length([n_ff if k == "ffn" else 0 for k in kinds])
    w.add_key_length(head)
    w.add_value_length(head)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_eps(1e-5)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_ssm_conv_kernel(d_conv)
    w.add_ssm_inner_size(d_inner)
    w.add_ssm_state_size(d_state)
    w.add_ssm_time_step_rank(n_ssm_head)
    w.add_ssm_group_count(n_group)

    def t(name, *shape, scale=0.2):
        w.add_tensor(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    t("token_embd.weight", n_vocab, n_embd, scale=1.0)
    w.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    for i, kind in enumerate(kinds):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, np.float32))
        if kind == "mamba":
            _mamba2_layer(w, t, rng, i, n_embd=n_embd, d_inner=d_inner, d_state=d_state, n_heads=n_ssm_head,
                          n_group=n_group, d_conv=d_conv)
        elif kind == "attn":
            t(f"blk.{i}.attn_q.weight", n_head * head, n_embd)
            t(f"blk.{i}.attn_k.weight", n_head_kv * head, n_embd)
            t(f"blk.{i}.attn_v.weight", n_head_kv * head, n_embd)
            t(f"blk.{i}.attn_output.weight", n_embd, n_head * head)
        else:
            t(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
            t(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
    return _finish(w, path)


MLX_CONFIGS = {
    # LFM2: short convolutions (ArraysCache) in layers 0 and 2, attention (KVCache) in 1 and 3
    "lfm2": dict(model_type="lfm2", hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                 norm_eps=1e-5, conv_bias=False, conv_L_cache=3, block_dim=64, block_multiple_of=16,
                 block_ffn_dim_multiplier=1.0, block_auto_adjust_ff_dim=False, block_ff_dim=128,
                 full_attn_idxs=[1, 3], rope_theta=10000.0),
    # Gemma 3: a 16-token sliding window (RotatingKVCache) in five layers of six, full attention in the sixth
    "gemma3_text": dict(model_type="gemma3_text", hidden_size=64, num_hidden_layers=6, intermediate_size=128,
                        num_attention_heads=4, num_key_value_heads=1, head_dim=16, rms_norm_eps=1e-6,
                        sliding_window=16, sliding_window_pattern=6, rope_theta=10000.0,
                        rope_local_base_freq=10000.0, query_pre_attn_scalar=16),
}


def write_mlx(kind: str, tokenizer_folder: Path, out: Path, *, seed: int = 0) -> Path:
    """A tiny random-weight MLX folder of `kind` (mlx-lm's own model class, its default initialisation), with the
    starter's tokenizer and chat template copied from `tokenizer_folder` (an MLX folder)."""
    import json
    import shutil

    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.utils import _get_classes

    mx.random.seed(seed)
    config = json.loads((tokenizer_folder / "config.json").read_text())
    config = {"vocab_size": config["vocab_size"], "max_position_embeddings": 4096, "tie_word_embeddings": True,
              **MLX_CONFIGS[kind]}
    model_class, args_class = _get_classes(config)
    model = model_class(args_class.from_dict(config))
    out.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out / "model.safetensors"), dict(tree_flatten(model.parameters())))
    (out / "config.json").write_text(json.dumps(config))
    for f in tokenizer_folder.iterdir():
        if f.name not in ("config.json", "model.safetensors"):
            shutil.copy(f, out / f.name)
    return out


def write_gemma4(vocab_source: Path, path: Path, *, n_embd: int = 64, n_layer: int = 4, seed: int = 0) -> Path:
    """A Gemma 4: sliding-window and full attention alternating (the last layer full, the one before it windowed,
    as in the real models, whose assistant drafters read those two layers' cache), grouped-query attention with
    normed queries and keys, and GELU feed-forward between post-norms."""
    rng = np.random.default_rng(seed)
    w, n_vocab = _writer(vocab_source, path, "gemma4")
    n_head, n_head_kv, head, n_ff = 4, 2, 16, 128
    _gemma4_keys(w, "gemma4", n_embd=n_embd, n_layer=n_layer, n_ff=n_ff, n_head=n_head, n_head_kv=n_head_kv,
                 head=head, windowed=[i % 2 == 0 for i in range(n_layer)])
    w.add_uint32("gemma4.embedding_length_per_layer_input", 0)

    def t(name, *shape, scale=0.2):
        w.add_tensor(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    t("token_embd.weight", n_vocab, n_embd, scale=1.0)
    w.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    w.add_tensor("rope_freqs.weight", np.ones(head // 2, np.float32))
    for i in range(n_layer):
        _gemma4_block(w, t, i, n_embd=n_embd, n_head=n_head, head=head, n_ff=n_ff, kv=n_head_kv)
    return _finish(w, path)


def _gemma4_keys(w, arch: str, *, n_embd: int, n_layer: int, n_ff: int, n_head: int, n_head_kv: int, head: int,
                 windowed: list[bool]) -> None:
    w.add_context_length(4096)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_key_length(head)
    w.add_value_length(head)
    w.add_uint32(f"{arch}.attention.key_length_swa", head)
    w.add_uint32(f"{arch}.attention.value_length_swa", head)
    w.add_rope_dimension_count(head)
    w.add_rope_freq_base(1000000.0)
    w.add_float32(f"{arch}.rope.freq_base_swa", 10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_sliding_window(64)
    w.add_array(f"{arch}.attention.sliding_window_pattern", windowed)


def _gemma4_block(w, t, i: int, *, n_embd: int, n_head: int, head: int, n_ff: int, kv: int) -> None:
    for norm in ("attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm"):
        w.add_tensor(f"blk.{i}.{norm}.weight", np.ones(n_embd, np.float32))
    w.add_tensor(f"blk.{i}.attn_q_norm.weight", np.ones(head, np.float32))
    w.add_tensor(f"blk.{i}.layer_output_scale.weight", np.ones(1, np.float32))
    t(f"blk.{i}.attn_q.weight", n_head * head, n_embd)
    if kv:  # the assistant's blocks have queries only: they read the model's cache
        w.add_tensor(f"blk.{i}.attn_k_norm.weight", np.ones(head, np.float32))
        t(f"blk.{i}.attn_k.weight", kv * head, n_embd)
        t(f"blk.{i}.attn_v.weight", kv * head, n_embd)
    t(f"blk.{i}.attn_output.weight", n_embd, n_head * head)
    t(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
    t(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
    t(f"blk.{i}.ffn_down.weight", n_embd, n_ff)


def write_gemma4_assistant(vocab_source: Path, path: Path, *, n_embd: int = 32, n_target_embd: int = 64,
                           seed: int = 1) -> Path:
    """A Gemma 4 "assistant": the separate drafter Google ships for each Gemma 4 (gemma4-assistant in llama.cpp).
    Two query-only blocks, a windowed then a full one, that attend through the model's own cache (its last two
    layers), fed the model's token embedding joined with its last hidden state; a hidden size of its own, with
    projections to and from the model's (embedding_length_out)."""
    rng = np.random.default_rng(seed)
    w, n_vocab = _writer(vocab_source, path, "gemma4-assistant")
    n_head, n_head_kv, head, n_ff, n_layer = 4, 2, 16, 64, 2
    _gemma4_keys(w, "gemma4-assistant", n_embd=n_embd, n_layer=n_layer, n_ff=n_ff, n_head=n_head,
                 n_head_kv=n_head_kv, head=head, windowed=[True, False])
    w.add_uint32("gemma4-assistant.embedding_length_out", n_target_embd)
    w.add_uint32("gemma4-assistant.nextn_predict_layers", n_layer)

    def t(name, *shape, scale=0.2):
        w.add_tensor(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    t("token_embd.weight", n_vocab, n_embd, scale=1.0)
    w.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    w.add_tensor("rope_freqs.weight", np.ones(head // 2, np.float32))
    t("nextn.pre_projection.weight", n_embd, 2 * n_target_embd)
    t("nextn.post_projection.weight", n_target_embd, n_embd)
    for i in range(n_layer):
        _gemma4_block(w, t, i, n_embd=n_embd, n_head=n_head, head=head, n_ff=n_ff, kv=0)
    return _finish(w, path)


def write_llama(vocab_source: Path, path: Path, *, n_embd: int = 64, n_layer: int = 24, seed: int = 0) -> Path:
    """A plain llama of `n_layer` layers (more than any one share holds when it is spread over helper machines)."""
    rng = np.random.default_rng(seed)
    w, n_vocab = _writer(vocab_source, path, "llama")
    n_head, n_head_kv, n_ff = 4, 2, 128
    head = n_embd // n_head
    w.add_context_length(4096)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(head)

    def t(name, *shape, scale=0.2):
        w.add_tensor(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    t("token_embd.weight", n_vocab, n_embd, scale=1.0)
    w.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    t("output.weight", n_vocab, n_embd)
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, np.float32))
        t(f"blk.{i}.attn_q.weight", n_embd, n_embd)
        t(f"blk.{i}.attn_k.weight", n_head_kv * head, n_embd)
        t(f"blk.{i}.attn_v.weight", n_head_kv * head, n_embd)
        t(f"blk.{i}.attn_output.weight", n_embd, n_embd)
        t(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
    return _finish(w, path)
