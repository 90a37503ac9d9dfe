"""scripts/setup's CUDA build without a system toolkit: which wheels match a driver, the toolkit laid out from them, the
CMake options; and doctor's words on the installed build. All without a GPU (the wheels' layout is made here)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from machine.hardware import GPU, Hardware, build_advice

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("cuda_toolkit", ROOT / "scripts" / "cuda_toolkit.py")
cuda_toolkit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cuda_toolkit)


def test_the_toolkit_matches_the_drivers_cuda_version():
    thirteen = cuda_toolkit.wheels_for((13, 0))
    assert "nvidia-cuda-nvcc==13.0.*" in thirteen and "nvidia-cuda-runtime==13.0.*" in thirteen
    assert "nvidia-cuda-crt==13.0.*" in thirteen and "nvidia-cuda-cccl==13.0.*" in thirteen
    assert "nvidia-cublas<13.1" in thirteen  # cuBLAS of CUDA 13.0, not a newer one the driver may not run
    assert "nvidia-cuda-nvcc==13.0.*" in cuda_toolkit.wheels_for((13, 9))  # newer drivers run the newest we know
    twelve = cuda_toolkit.wheels_for((12, 4))
    assert "nvidia-cuda-nvcc-cu12==12.4.*" in twelve and "nvidia-cuda-runtime-cu12==12.4.*" in twelve
    with pytest.raises(SystemExit, match="CUDA 12 and 13"):
        cuda_toolkit.wheels_for((11, 8))


def _fake_wheels(site: Path, parts: dict[str, dict[str, list[str]]]) -> None:
    for part, subs in parts.items():
        for sub, names in subs.items():
            d = site / "nvidia" / part / sub
            d.mkdir(parents=True, exist_ok=True)
            for name in names:
                (d / name).write_text(name)


@pytest.mark.parametrize("layout", ["cu13", "cu12"])
def test_the_wheels_are_laid_out_as_a_toolkit(tmp_path, layout):
    site = tmp_path / "site"
    if layout == "cu13":  # CUDA 13's wheels share one folder
        _fake_wheels(site, {"cu13": {"bin": ["nvcc", "ptxas"], "include": ["cuda_runtime.h", "cublas_v2.h"],
                                     "lib": ["libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13"],
                                     "nvvm": ["libdevice"]}})
    else:  # CUDA 12's: one folder a wheel
        _fake_wheels(site, {"cuda_nvcc": {"bin": ["nvcc"], "include": ["crt"], "nvvm": ["bin"]},
                            "cuda_runtime": {"include": ["cuda_runtime.h"], "lib": ["libcudart.so.12"]},
                            "cublas": {"include": ["cublas_v2.h"], "lib": ["libcublas.so.12", "libcublasLt.so.12"]},
                            "cuda_cccl": {"include": ["cuda"]}})
    root = tmp_path / "toolkit"
    cuda_toolkit.lay_out(site, root)
    major = layout[-2:]
    assert (root / "bin" / "nvcc").read_text() == "nvcc"
    assert (root / "include" / "cuda_runtime.h").exists() and (root / "include" / "cublas_v2.h").exists()
    for lib in ("libcudart", "libcublas", "libcublasLt"):  # the linker's unversioned names
        assert (root / "lib64" / f"{lib}.so").resolve() == (root / "lib64" / f"{lib}.so.{major}").resolve()
    assert (root / "targets" / "x86_64-linux" / "include" / "cuda_runtime.h").exists()
    assert (root / "targets" / "x86_64-linux" / "lib" / f"libcudart.so.{major}").exists()
    assert (root / "lib").resolve() == (root / "lib64").resolve()
    args = cuda_toolkit.cmake_args(root, ["86", "90"])
    assert "-DGGML_CUDA=on" in args and f"-DCUDAToolkit_ROOT={root}" in args
    assert "-DCMAKE_CUDA_ARCHITECTURES=86;90" in args
    assert "-DGGML_CUDA_NO_VMM=ON" in args or "-DCUDA_cuda_driver_LIBRARY=" in args  # the wheels carry no libcuda


def test_no_nvidia_driver_means_no_cuda_build():
    """Where nvidia-smi is missing or answers nothing, the helper exits 3 and setup builds for the CPU (or Metal)."""
    env = {k: v for k, v in os.environ.items() if k != "LANTERN_CUDA"}
    env["PATH"] = str(ROOT / "tests")  # no nvidia-smi on this PATH
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "cuda_toolkit.py"), "/nonexistent"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and r.stdout == ""


def test_the_driver_is_read_from_nvidia_smi(tmp_path):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\nif [ -n \"$1\" ]; then echo 'NVIDIA H200, 9.0'; echo 'NVIDIA GeForce RTX 4090, 8.9';"
                   " else echo '| NVIDIA-SMI 580.159.03   Driver Version: 580.159.03   CUDA Version: 13.0 |'; fi\n")
    smi.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "cuda_toolkit.py"), "--probe"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert '"cuda": [13, 0]' in r.stdout and '"archs": ["89", "90"]' in r.stdout


GiB = 1 << 30


def _machine(**kw) -> Hardware:
    base = dict(os="Linux", arch="x86_64", cpu_cores=8, ram_total_bytes=32 * GiB, ram_available_bytes=24 * GiB,
                llamacpp_version="0.3.36", llamacpp_features="CPU : AVX2 = 1 |")
    return Hardware(**{**base, **kw})


def test_doctor_names_the_build_and_what_would_make_it_faster():
    rtx = (GPU("NVIDIA GeForce RTX 4090", 24 * GiB, 22 * GiB),)
    build, advice = build_advice(_machine(gpus=rtx))
    assert build == "CPU only" and "RTX 4090 is not used" in advice and "scripts/setup" in advice
    assert "-DGGML_CUDA=on" in advice
    build, advice = build_advice(_machine(gpus=rtx, llamacpp_gpu_offload=True, llamacpp_gpu_backend="CUDA"))
    assert (build, advice) == ("CUDA (GPU offload)", "")
    build, advice = build_advice(_machine(os="Darwin", arch="arm64", apple_silicon=True))
    assert "Apple GPU is not used" in advice and "-DGGML_METAL=on" in advice
    build, advice = build_advice(_machine(llamacpp_features="CPU : OPENMP = 1 |"))
    assert build == "CPU only, with OpenMP" and "-DGGML_OPENMP=OFF" in advice
    assert build_advice(_machine()) == ("CPU only", "")  # no GPU: nothing a build can add
    assert build_advice(_machine(llamacpp_version=None))[0] == "not installed"
