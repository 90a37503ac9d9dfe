"""llama.cpp's RPC backend through ctypes: the server a helper machine runs (`lantern worker`), and on the main
machine the helpers' devices a model is loaded onto. Used only where an abort is the process's own end: the worker,
and the child process that holds a spread model (runtimes/spread_child.py). The checks that come before, in words,
are machine/helpers.py's."""
from __future__ import annotations

import ctypes
from functools import lru_cache

from basics.errors import ModelLoadError

_DEVICE_CPU, _DEVICE_GPU, _DEVICE_ACCEL = 0, 1, 3


class NoRpcBuild(ModelLoadError):
    """This llama-cpp-python was built without llama.cpp's RPC backend."""


@lru_cache(maxsize=1)
def _libs():
    # deferred: llama.cpp is loaded only where a helper is used or served
    import llama_cpp.llama_cpp as low
    from llama_cpp._ctypes_extensions import load_shared_library

    ggml = load_shared_library("ggml", low._base_path)
    try:
        rpc = load_shared_library("ggml-rpc", low._base_path)
    except (OSError, FileNotFoundError, RuntimeError):
        raise NoRpcBuild("This llama-cpp-python was built without llama.cpp's RPC backend, which helper machines need: "
                         "run scripts/setup again (it builds with -DGGML_RPC=ON), or pip install it with "
                         'CMAKE_ARGS="-DGGML_RPC=on".') from None
    vp, sz = ctypes.c_void_p, ctypes.c_size_t
    for name, args, res in (("ggml_backend_load_all", [], None), ("ggml_backend_dev_count", [], sz),
                            ("ggml_backend_dev_get", [sz], vp), ("ggml_backend_dev_type", [vp], ctypes.c_int),
                            ("ggml_backend_dev_name", [vp], ctypes.c_char_p),
                            ("ggml_backend_dev_description", [vp], ctypes.c_char_p),
                            ("ggml_backend_dev_memory", [vp, ctypes.POINTER(sz), ctypes.POINTER(sz)], None),
                            ("ggml_backend_reg_dev_count", [vp], sz), ("ggml_backend_reg_dev_get", [vp, sz], vp)):
        fn = getattr(ggml, name)
        fn.argtypes, fn.restype = args, res
    rpc.ggml_backend_rpc_start_server.argtypes = [ctypes.c_char_p, ctypes.c_char_p, sz, sz, ctypes.POINTER(vp)]
    rpc.ggml_backend_rpc_start_server.restype = None
    rpc.ggml_backend_rpc_add_server.argtypes = [ctypes.c_char_p]
    rpc.ggml_backend_rpc_add_server.restype = vp
    return ggml, rpc


def local_devices() -> list[tuple[int, str, str, int, int]]:
    """The devices a helper offers, as llama.cpp's rpc-server picks them: every GPU, else the CPU. Each as
    (address, name, description, free bytes, total bytes)."""
    ggml, _ = _libs()
    ggml.ggml_backend_load_all()
    every = [ggml.ggml_backend_dev_get(i) for i in range(ggml.ggml_backend_dev_count())]
    picked = [d for d in every if ggml.ggml_backend_dev_type(d) not in (_DEVICE_CPU, _DEVICE_ACCEL)]
    picked = picked or [d for d in every if ggml.ggml_backend_dev_type(d) == _DEVICE_CPU][:1]
    return [(d, *_describe(ggml, d)) for d in picked]


def start_server(endpoint: str, cache_dir: str | None, threads: int, devices: list[int]) -> None:
    """Serve `devices` at `endpoint` until the process ends (llama.cpp's loop; it returns only when it cannot bind
    or accept)."""
    _, rpc = _libs()
    array = (ctypes.c_void_p * len(devices))(*devices)
    rpc.ggml_backend_rpc_start_server(endpoint.encode(), cache_dir.encode() if cache_dir else None, threads,
                                      len(devices), array)


def helper_devices(endpoints: tuple[str, ...]) -> list[tuple[str, int]]:
    """The devices of each helper, in order, as (endpoint, device address) for a model's device list. Each helper
    must have answered machine.helpers.probe() just before: llama.cpp aborts when one does not."""
    ggml, rpc = _libs()
    found = []
    for endpoint in endpoints:
        reg = rpc.ggml_backend_rpc_add_server(endpoint.encode())
        count = ggml.ggml_backend_reg_dev_count(reg)
        found += [(endpoint, ggml.ggml_backend_reg_dev_get(reg, i)) for i in range(count)]
    return found


def local_gpus() -> list[tuple[int, int]]:
    """This machine's GPUs (CUDA, Metal) as (device address, free bytes), in llama.cpp's order."""
    ggml, _ = _libs()
    ggml.ggml_backend_load_all()
    every = [ggml.ggml_backend_dev_get(i) for i in range(ggml.ggml_backend_dev_count())]
    return [(d, _describe(ggml, d)[2]) for d in every if ggml.ggml_backend_dev_type(d) == _DEVICE_GPU]


def _describe(ggml, dev) -> tuple[str, str, int, int]:
    free, total = ctypes.c_size_t(), ctypes.c_size_t()
    ggml.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
    return (ggml.ggml_backend_dev_name(dev).decode(errors="replace"),
            ggml.ggml_backend_dev_description(dev).decode(errors="replace"), free.value, total.value)
