"""What this machine has: CPU, memory, GPUs, and what the installed runtimes can use of it."""
from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass, field

import psutil

from machine.helpers import Helper, probe_all

GPU_BACKENDS = ("CUDA", "Metal", "Vulkan", "HIP", "SYCL", "OpenCL")


@dataclass(frozen=True)
class GPU:
    name: str
    total_bytes: int
    free_bytes: int
    vendor: str = "nvidia"


@dataclass(frozen=True)
class Hardware:
    """A description of a machine; detect() fills it in, tests write their own."""

    os: str  # "Linux", "Darwin", "Windows"
    arch: str  # "x86_64", "arm64"...
    cpu_cores: int  # physical
    ram_total_bytes: int
    ram_available_bytes: int
    gpus: tuple[GPU, ...] = ()
    apple_silicon: bool = False
    llamacpp_version: str | None = None  # None: llama-cpp-python is not installed
    llamacpp_gpu_offload: bool = False
    llamacpp_gpu_backend: str | None = None  # "CUDA", "Metal"... as the build reports it
    llamacpp_features: str = ""
    mlx_version: str | None = None  # None: mlx / mlx-lm are not installed
    notes: tuple[str, ...] = field(default=())  # what could not be detected, and why
    cpu_name: str = ""  # "Apple M3 Pro", "AMD Ryzen 7 7840U..." (for the speed estimate)
    # Helper machines that answered (machine/helpers.py): a model too big for this machine may fit with them
    helpers: tuple[Helper, ...] = ()

    @property
    def nvidia(self) -> tuple[GPU, ...]:
        return tuple(g for g in self.gpus if g.vendor == "nvidia")


def detect(helpers: tuple[str, ...] = ()) -> Hardware:
    """Look at this machine (a fraction of a second; no model is loaded), and ask `helpers` what they have (a few
    seconds at most each; one that does not answer is a note)."""
    notes: list[str] = []
    found, failed = probe_all(helpers)
    notes += [str(e) for e in failed]
    system, arch = platform.system(), platform.machine().lower()
    arch = "arm64" if arch in ("arm64", "aarch64") else arch
    vm = psutil.virtual_memory()
    gpus, why = _nvidia_gpus()
    if why:
        notes.append(why)
    llama = _llamacpp_build()
    return Hardware(
        os=system,
        arch=arch,
        cpu_cores=psutil.cpu_count(logical=False) or os.cpu_count() or 1,
        ram_total_bytes=int(vm.total),
        ram_available_bytes=int(vm.available),
        gpus=tuple(gpus),
        apple_silicon=system == "Darwin" and arch == "arm64",
        llamacpp_version=llama[0],
        llamacpp_gpu_offload=llama[1],
        llamacpp_gpu_backend=llama[2],
        llamacpp_features=llama[3],
        mlx_version=_mlx_version(),
        notes=tuple(notes),
        cpu_name=_cpu_name(system),
        helpers=tuple(found),
    )


def _cpu_name(system: str) -> str:
    """The processor's marketing name, or "" (never an error: it only refines an estimate)."""
    try:
        if system == "Darwin":
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                 timeout=5).stdout
            return out.strip()[:100]
        if system == "Linux":
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.lower().startswith(("model name", "hardware")):
                        return line.split(":", 1)[1].strip()[:100]
        return platform.processor()[:100]
    except (OSError, subprocess.SubprocessError):
        return ""


def _nvidia_gpus() -> tuple[list[GPU], str | None]:
    """NVIDIA GPUs through NVML (nvidia-ml-py) when present, else `nvidia-smi`."""
    try:
        import pynvml
    except ImportError:
        pynvml = None
    if pynvml is not None:
        try:
            pynvml.nvmlInit()
            try:
                found = []
                for i in range(pynvml.nvmlDeviceGetCount()):
                    h = pynvml.nvmlDeviceGetHandleByIndex(i)
                    mem = pynvml.nvmlDeviceGetMemoryInfo(h)
                    name = pynvml.nvmlDeviceGetName(h)
                    found.append(GPU(name.decode() if isinstance(name, bytes) else name, int(mem.total), int(mem.free)))
                return found, None
            finally:
                pynvml.nvmlShutdown()
        except pynvml.NVMLError as e:
            if shutil.which("nvidia-smi") is None:
                return [], f"NVML: {e}"
    return _nvidia_smi()


def _nvidia_smi() -> tuple[list[GPU], str | None]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return [], None  # no NVIDIA driver: nothing to say
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return [], f"nvidia-smi failed: {e}"
    return parse_nvidia_smi(out), None


def parse_nvidia_smi(out: str) -> list[GPU]:
    """Parse `nvidia-smi --query-gpu=name,memory.total,memory.free --format=csv,noheader,nounits`."""
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.rsplit(",", 2)]
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            gpus.append(GPU(parts[0], int(parts[1]) << 20, int(parts[2]) << 20))
    return gpus


def _llamacpp_build() -> tuple[str | None, bool, str | None, str]:
    try:
        version = importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return None, False, None, ""
    # deferred: a broken llama.cpp build fails where a model loads (doctor reports it), not at import
    import llama_cpp

    features = llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()
    offload = llama_gpu_offload()
    backend = next((b for b in GPU_BACKENDS if b.lower() in features.lower()), None)
    return version, offload, backend if offload else None, features


def llama_gpu_offload() -> bool:
    """Whether llama.cpp has a GPU of this machine to offload to (CUDA, Metal, Vulkan...). llama.cpp's own
    llama_supports_gpu_offload() also says yes for a build with the RPC backend, which Lantern always has (helper
    machines), so the devices are asked instead."""
    # deferred: llama.cpp's libraries, loaded where the build is asked about
    import llama_cpp.llama_cpp as low
    from llama_cpp._ctypes_extensions import load_shared_library

    ggml = load_shared_library("ggml", low._base_path)
    ggml.ggml_backend_load_all.argtypes, ggml.ggml_backend_load_all.restype = [], None
    ggml.ggml_backend_dev_by_type.argtypes, ggml.ggml_backend_dev_by_type.restype = [ctypes.c_int], ctypes.c_void_p
    ggml.ggml_backend_load_all()
    return any(ggml.ggml_backend_dev_by_type(kind) for kind in (1, 2))  # GGML_BACKEND_DEVICE_TYPE_GPU, _IGPU


def _mlx_version() -> str | None:
    if importlib.util.find_spec("mlx") is None or importlib.util.find_spec("mlx_lm") is None:
        return None
    try:
        return importlib.metadata.version("mlx")
    except importlib.metadata.PackageNotFoundError:
        return None


def build_advice(hw: Hardware) -> tuple[str, str]:
    """Which llama.cpp build is installed, in words, and what would make this machine faster ('' if nothing)."""
    if hw.llamacpp_version is None:
        return "not installed", "scripts/setup installs it, built for this machine's GPU"
    openmp = "OPENMP = 1" in hw.llamacpp_features
    build = f"{hw.llamacpp_gpu_backend} (GPU offload)" if hw.llamacpp_gpu_offload else "CPU only"
    if openmp:
        build += ", with OpenMP"
    again = ("run scripts/setup again (it builds for the GPU it finds), or: pip install --force-reinstall "
             f"--no-cache-dir --no-binary llama-cpp-python llama-cpp-python=={hw.llamacpp_version} with CMAKE_ARGS=")
    if hw.nvidia and hw.llamacpp_gpu_backend not in ("CUDA", "Vulkan"):
        return build, (f"{hw.nvidia[0].name} is not used: this build has no CUDA. Rebuild for CUDA: {again}"
                       '"-DGGML_CUDA=on"')
    if hw.apple_silicon and hw.llamacpp_gpu_backend != "Metal":
        return build, f"the Apple GPU is not used: this build has no Metal. Rebuild for Metal: {again}\"-DGGML_METAL=on\""
    if openmp:
        return build, ("once two threads have computed (a chat beside document search or /v1/embeddings) each "
                       f"decode can cost ~3x as much on a small machine; rebuild without OpenMP: {again}"
                       '"-DGGML_OPENMP=OFF"')
    return build, ""  # the GPU is used, or there is none: nothing a build can add

