"""The automatic backend choice, from descriptions of machines and models, and one real detection."""
from __future__ import annotations

from pathlib import Path

import pytest

from basics.errors import ModelLoadError
from machine.hardware import GPU, Hardware, detect, parse_nvidia_smi
from models.choice import choose_backend
from models.info import ModelInfo, describe_model

GiB = 1 << 30

# An 8B model in Q4_K_M: 4.9 GB of weights, 32 layers, 8 KV heads of 128 (128 KiB of KV cache a token).
LLAMA_8B = ModelInfo(Path("llama-8b.Q4_K_M.gguf"), "gguf", int(4.9 * GiB), 32, 131072, 32 * 8 * 256 * 2,
                     "llama", "Q4_K_M", output_bytes=int(0.6 * GiB))
MLX_4BIT = ModelInfo(Path("Llama-3.2-3B-Instruct-4bit"), "mlx", int(1.8 * GiB), 28, 131072, 28 * 8 * 256 * 2,
                     "llama", "4-bit")


def machine(**kw) -> Hardware:
    base = dict(os="Linux", arch="x86_64", cpu_cores=8, ram_total_bytes=32 * GiB, ram_available_bytes=24 * GiB,
                llamacpp_version="0.3.36")
    return Hardware(**{**base, **kw})


def nvidia(free_gib: float, *, cuda: bool = True) -> Hardware:
    return machine(gpus=(GPU("NVIDIA GeForce RTX 4090", 24 * GiB, int(free_gib * GiB)),),
                   llamacpp_gpu_offload=cuda, llamacpp_gpu_backend="CUDA" if cuda else None)


def apple(*, metal: bool = True, ram_gib: int = 16) -> Hardware:
    return machine(os="Darwin", arch="arm64", apple_silicon=True, ram_total_bytes=ram_gib * GiB,
                   llamacpp_gpu_offload=metal, llamacpp_gpu_backend="Metal" if metal else None, mlx_version="0.32.4")


def test_nvidia_with_room_puts_every_layer_on_the_gpu():
    c = choose_backend(nvidia(22), LLAMA_8B, n_ctx=8192)
    assert (c.backend, c.n_gpu_layers, c.device) == ("llamacpp", -1, "GPU")
    assert "every layer on the GPU" in c.reason and "22.0 GiB free" in c.reason


def test_nvidia_short_of_memory_splits_the_layers():
    c = choose_backend(nvidia(4), LLAMA_8B, n_ctx=8192)
    assert c.backend == "llamacpp" and 0 < c.n_gpu_layers < 32
    assert f"{c.n_gpu_layers} of 32 layers on the GPU" in c.reason
    # more free memory, more layers; a longer context, fewer
    assert choose_backend(nvidia(5), LLAMA_8B, n_ctx=8192).n_gpu_layers > c.n_gpu_layers
    assert choose_backend(nvidia(4), LLAMA_8B, n_ctx=32768).n_gpu_layers < c.n_gpu_layers


def test_nvidia_with_no_room_at_all_runs_on_the_cpu():
    c = choose_backend(nvidia(0.5), LLAMA_8B, n_ctx=8192)
    assert c.n_gpu_layers == 0 and "CPU" in c.reason


def test_nvidia_with_a_cpu_only_build_says_how_to_rebuild():
    c = choose_backend(nvidia(22, cuda=False), LLAMA_8B, n_ctx=8192)
    assert (c.backend, c.n_gpu_layers) == ("llamacpp", 0)
    assert "built without CUDA" in c.reason
    assert 'CMAKE_ARGS="-DGGML_CUDA=on" pip install' in c.advice and "llama-cpp-python==0.3.36" in c.advice
    with pytest.raises(ModelLoadError, match="cannot use a GPU"):
        choose_backend(nvidia(22, cuda=False), LLAMA_8B, n_ctx=8192, n_gpu_layers=10)


def test_apple_silicon_runs_gguf_on_metal_and_mlx_models_on_mlx():
    gguf = choose_backend(apple(), LLAMA_8B, n_ctx=8192)
    assert (gguf.backend, gguf.n_gpu_layers) == ("llamacpp", -1) and "Metal" in gguf.reason
    mlx = choose_backend(apple(), MLX_4BIT, n_ctx=8192)
    assert mlx.backend == "mlx" and "Metal" in mlx.reason
    tight = choose_backend(apple(ram_gib=8), LLAMA_8B, n_ctx=32768)
    assert "swapping" in tight.reason
    no_metal = choose_backend(apple(metal=False), LLAMA_8B, n_ctx=8192)
    assert no_metal.n_gpu_layers == 0 and "-DGGML_METAL=on" in no_metal.advice


def test_a_cpu_only_machine_runs_llamacpp_on_the_cpu():
    c = choose_backend(machine(), LLAMA_8B, n_ctx=4096)
    assert (c.backend, c.n_gpu_layers) == ("llamacpp", 0) and "no usable GPU" in c.reason


def test_the_user_overrides_every_part():
    assert choose_backend(nvidia(22), LLAMA_8B, n_ctx=8192, n_gpu_layers=5).n_gpu_layers == 5
    assert choose_backend(nvidia(22), LLAMA_8B, n_ctx=8192, n_gpu_layers=0).n_gpu_layers == 0
    assert choose_backend(apple(), LLAMA_8B, n_ctx=8192, backend="mlx").backend == "mlx"
    with pytest.raises(ModelLoadError, match="MLX model"):
        choose_backend(apple(), MLX_4BIT, n_ctx=8192, backend="llamacpp")
    with pytest.raises(ModelLoadError, match="not installed"):
        choose_backend(machine(), MLX_4BIT, n_ctx=8192)
    with pytest.raises(ModelLoadError, match="Unknown backend"):
        choose_backend(machine(), LLAMA_8B, n_ctx=8192, backend="vulkan")


def test_nvidia_smi_output_is_parsed():
    out = "NVIDIA GeForce RTX 4090, 24564, 23000\nNVIDIA A100-SXM4-80GB, 81920, 80000\n"
    gpus = parse_nvidia_smi(out)
    assert [g.name for g in gpus] == ["NVIDIA GeForce RTX 4090", "NVIDIA A100-SXM4-80GB"]
    assert gpus[0].total_bytes == 24564 << 20 and gpus[1].free_bytes == 80000 << 20
    assert parse_nvidia_smi("No devices were found\n") == []


def test_this_machine_is_detected_and_its_models_described(smollm2_path, gemma_path, smollm2_mlx_path):
    hw = detect()
    assert hw.cpu_cores >= 1 and hw.ram_total_bytes > hw.ram_available_bytes > 0
    assert hw.llamacpp_version == "0.3.36" and "CPU" in hw.llamacpp_features
    assert hw.mlx_version is not None  # the dev extra installs mlx[cpu] on Linux
    smol = describe_model(smollm2_path)
    assert (smol.format, smol.n_layers, smol.architecture, smol.quant) == ("gguf", 30, "llama", "Q4_1")
    # 30 layers x 3 KV heads x (64 + 64) dims x 2 bytes
    assert smol.kv_bytes_per_token == 30 * 3 * 128 * 2 and smol.n_ctx_train == 8192
    assert describe_model(gemma_path).quant == "Q4_K_M"
    mlx = describe_model(smollm2_mlx_path)
    assert (mlx.format, mlx.n_layers, mlx.kv_bytes_per_token, mlx.quant) == ("mlx", 30, smol.kv_bytes_per_token,
                                                                            "4-bit")
    where = choose_backend(hw, smol, n_ctx=4096).device
    if hw.nvidia and hw.llamacpp_gpu_backend == "CUDA" or hw.apple_silicon and hw.llamacpp_gpu_backend == "Metal":
        assert where == "GPU"  # 270 MB on any GPU Lantern meets
    elif not hw.apple_silicon:
        assert where == "CPU"


def test_the_fast_gguf_header_reader_agrees_with_gguf_and_refuses_broken_files(smollm2_path, tmp_path):
    from gguf import GGUFReader

    from files.gguf_header import read_gguf_header

    header = read_gguf_header(smollm2_path)
    reader = GGUFReader(str(smollm2_path))
    assert [(t.name, t.type_name, t.n_bytes) for t in header.tensors] == \
        [(t.name, t.tensor_type.name, int(t.n_bytes)) for t in reader.tensors]
    for key in ("general.architecture", "llama.block_count", "llama.rope.freq_base", "tokenizer.chat_template"):
        assert header.metadata[key] == reader.fields[key].contents(), key
    assert header.metadata["tokenizer.ggml.tokens"] == 49152  # a skipped array keeps its length
    data = smollm2_path.read_bytes()[:200_000]  # cut inside the vocabulary
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data)
    with pytest.raises(ModelLoadError, match="not a readable GGUF"):
        describe_model(cut)
    huge = tmp_path / "huge.gguf"  # a string length far past the end of the file
    huge.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (0).to_bytes(8, "little") + (1).to_bytes(8, "little")
                     + (1 << 62).to_bytes(8, "little"))
    with pytest.raises(ModelLoadError, match="past the end"):
        describe_model(huge)
