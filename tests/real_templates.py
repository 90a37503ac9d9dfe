"""The real chat templates of about 70 models, from llama-cpp-python's source distribution (llama.cpp keeps them
as test data). Fetched once with pip and cached outside the repository; nothing is committed."""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "0.3.36"
CACHE = Path(os.environ.get("LANTERN_TEST_CACHE", Path.home() / ".cache" / "lantern-tests"))
PREFIX = "vendor/llama.cpp/models/templates/"


def templates_dir() -> Path:
    """The folder of `*.jinja` templates, downloading the sdist the first time."""
    target = CACHE / f"llama.cpp-templates-{VERSION}"
    if (target / ".complete").exists():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                        f"llama-cpp-python=={VERSION}", "-d", tmp], check=True)
        sdist = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        partial = target.with_name(target.name + ".partial")
        partial.mkdir(parents=True, exist_ok=True)
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                _, _, inner = member.name.partition("/")
                if inner.startswith(PREFIX) and inner.endswith(".jinja") and member.isfile():
                    name = Path(inner).name
                    data = tar.extractfile(member).read()
                    (partial / name).write_bytes(data)
        (partial / ".complete").write_text(VERSION)
        partial.replace(target) if not target.exists() else None
    return target


def template(name: str) -> str:
    return (templates_dir() / f"{name}.jinja").read_text(encoding="utf-8")


def all_templates() -> list[Path]:
    return sorted(templates_dir().glob("*.jinja"))
