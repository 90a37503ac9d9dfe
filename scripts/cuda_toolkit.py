"""A CUDA toolkit from NVIDIA's PyPI wheels, for building llama.cpp where no system toolkit is installed.

scripts/setup runs this with the venv's Python on a machine whose NVIDIA driver answers (or with
LANTERN_CUDA=force). It prints the CMAKE_ARGS that build llama-cpp-python for this GPU, or nothing (exit 3)
when there is no NVIDIA driver. Standard library only: it runs before Lantern is installed.

    python scripts/cuda_toolkit.py DEST     lay out a toolkit in DEST, print CMAKE_ARGS
    python scripts/cuda_toolkit.py --probe  print what the driver reports (CUDA version, compute capability)

The wheels put nvcc, headers and libraries under site-packages/nvidia/<part>/{bin,include,lib,nvvm}
(CUDA 13: one folder, cu13; CUDA 12: one per wheel). CMake's FindCUDAToolkit wants one root with bin/nvcc,
include, lib64 and targets/x86_64-linux, and unversioned libcudart.so / libcublas.so to link against; the
links below give it that. The wheels carry no libcuda.so (the driver's), so the driver's own libcuda.so.1 is
named to CMake, or VMM is left out where none is found.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# The newest CUDA minor each wheel set is published for; a newer driver builds with the newest we know.
NEWEST = {12: 9, 13: 0}


def probe() -> dict | None:
    """What nvidia-smi says of the driver and GPUs, or None without a working NVIDIA driver."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        head = subprocess.run([smi], capture_output=True, text=True, timeout=30).stdout
        caps = subprocess.run([smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", head)
    gpus = [line.rsplit(",", 1) for line in caps.strip().splitlines() if "," in line]
    archs = sorted({c.strip().replace(".", "") for _, c in gpus if re.fullmatch(r"\d+\.\d+", c.strip())})
    if not m or not archs:
        return None
    return {"cuda": (int(m[1]), int(m[2])), "archs": archs, "gpus": [n.strip() for n, _ in gpus]}


def wheels_for(cuda: tuple[int, int]) -> list[str]:
    """The wheels of a toolkit no newer than the driver's CUDA version (a newer one would not run on it)."""
    major, minor = cuda
    if major not in NEWEST:
        raise SystemExit(f"CUDA {major}.{minor}: Lantern knows toolkit wheels for CUDA 12 and 13 only")
    minor = min(minor, NEWEST[major])
    v = f"=={major}.{minor}.*"
    if major == 13:
        # cuBLAS numbers its releases apart from the toolkit; 13.0's is 13.0.x, later ones follow minor
        # version compatibility within 13.
        blas = "nvidia-cublas<13.1" if minor == 0 else "nvidia-cublas>=13,<14"
        return [f"nvidia-cuda-nvcc{v}", f"nvidia-cuda-runtime{v}", f"nvidia-cuda-cccl{v}",
                f"nvidia-cuda-crt{v}", f"nvidia-nvvm{v}", blas]
    return [f"nvidia-cuda-nvcc-cu12{v}", f"nvidia-cuda-runtime-cu12{v}", f"nvidia-cuda-cccl-cu12{v}",
            "nvidia-cublas-cu12>=12,<13"]


def lay_out(site: Path, root: Path) -> None:
    """Links every wheel's bin/include/lib/nvvm entries into one toolkit root."""
    if root.exists():
        shutil.rmtree(root)
    for sub in ("bin", "include", "lib64", "nvvm"):
        (root / sub).mkdir(parents=True)
    for part in sorted((site / "nvidia").iterdir()):
        if not part.is_dir():
            continue
        for sub, dest in (("bin", "bin"), ("include", "include"), ("lib", "lib64"), ("nvvm", "nvvm")):
            src = part / sub
            if not src.is_dir():
                continue
            for entry in src.iterdir():
                link = root / dest / entry.name
                if not link.exists():
                    link.symlink_to(entry)
    lib = root / "lib64"
    for so in list(lib.iterdir()):
        m = re.fullmatch(r"(lib\w+)\.so\.\d+", so.name)  # libcudart.so.13 -> libcudart.so for the linker
        if m and not (lib / f"{m[1]}.so").exists():
            (lib / f"{m[1]}.so").symlink_to(so.name)
    (root / "lib").symlink_to("lib64")
    target = root / "targets" / "x86_64-linux"
    target.mkdir(parents=True)
    (target / "include").symlink_to(root / "include")
    (target / "lib").symlink_to(lib)
    if not (root / "bin" / "nvcc").exists():
        raise SystemExit(f"no nvcc in the CUDA wheels under {site}")


def driver_libcuda() -> str | None:
    """The driver's libcuda.so.1, which CMake links for VMM; the wheels have no stub of it."""
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    for line in out.splitlines():
        if "libcuda.so.1 " in line and "x86-64" in line:
            return line.rsplit("=>", 1)[1].strip()
    for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/local/nvidia/lib64", "/usr/lib/wsl/lib"):
        if os.path.exists(f"{d}/libcuda.so.1"):
            return f"{d}/libcuda.so.1"
    return None


def cmake_args(root: Path, archs: list[str]) -> str:
    args = [f"-DGGML_CUDA=on", f"-DCUDAToolkit_ROOT={root}", f"-DCMAKE_CUDA_COMPILER={root / 'bin' / 'nvcc'}",
            f"-DCMAKE_CUDA_ARCHITECTURES={';'.join(archs)}"]
    libcuda = driver_libcuda()
    if libcuda:
        args.append(f"-DCUDA_cuda_driver_LIBRARY={libcuda}")
    else:
        args.append("-DGGML_CUDA_NO_VMM=ON")
    return " ".join(args)


def main(argv: list[str]) -> int:
    info = probe()
    if argv[:1] == ["--probe"]:
        print(json.dumps(info))
        return 0 if info else 3
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    forced = os.environ.get("LANTERN_CUDA", "")
    if info is None and forced != "force":
        return 3
    # LANTERN_CUDA=force builds for LANTERN_CUDA_VERSION / LANTERN_CUDA_ARCHS on a machine without the GPU
    # (a wheel made for another machine, or the build checked in CI-like places).
    cuda = tuple(int(x) for x in os.environ.get("LANTERN_CUDA_VERSION", "").split(".")) if forced else None
    cuda = cuda or (info["cuda"] if info else (13, 0))
    archs = os.environ.get("LANTERN_CUDA_ARCHS", "").split(";") if os.environ.get("LANTERN_CUDA_ARCHS") \
        else (info["archs"] if info else ["native"])
    dest = Path(argv[0]).resolve()
    site = dest / "site"
    wheels = wheels_for(cuda)
    stamp = dest / "wheels.json"
    if not (stamp.exists() and stamp.read_text() == json.dumps(wheels)):
        if site.exists():
            shutil.rmtree(site)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--target", str(site), *wheels], check=True, stdout=sys.stderr)
        lay_out(site, dest / "toolkit")
        stamp.write_text(json.dumps(wheels))
    print(cmake_args(dest / "toolkit", archs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
