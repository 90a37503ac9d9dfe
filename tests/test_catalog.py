"""The shipped catalog is well formed, and the fit check places models on machines described in tests."""
from __future__ import annotations

import json

import pytest

from backends.hardware import GPU, Hardware
from models.catalog import CatalogError, load_catalog
from models.fit import check_fit

GiB = 1 << 30


def test_every_catalog_entry_is_well_formed():
    entries = load_catalog()
    assert len(entries) >= 10
    for backend in ("llamacpp", "mlx"):
        sizes = sorted(e.params_b for e in entries if e.backend == backend)
        assert sizes[0] <= 0.6 and sizes[-1] >= 13, (backend, sizes)  # about 0.5B to about 14B
    for e in entries:
        # 4-bit weights: roughly 0.5 to 0.75 bytes a parameter (embeddings and mixed quants vary)
        assert 0.45 * e.params_b * 1e9 < e.size_bytes < 0.8 * e.params_b * 1e9 + 2e8, e.name
        assert e.quant in ("Q4_K_M", "4-bit")
        info = e.model_info()
        assert info.kv_bytes(4096) == e.n_layers * e.n_kv_heads * e.head_dim * 4 * 4096


@pytest.mark.parametrize("change,why", [
    (dict(backend="mlx"), "backend and format"),
    (dict(repo="no-owner"), "owner/name"),
    (dict(files=["model.bin"]), ".gguf"),
    (dict(size_bytes=10), "size_bytes"),
    (dict(name="Has Spaces"), "lowercase"),
    (dict(extra=1), "missing or unknown"),
])
def test_malformed_entries_are_caught(change, why):
    from importlib import resources

    entry = json.loads(resources.files("models").joinpath("data/catalog.json").read_text())["models"][0]
    with pytest.raises(CatalogError, match=why):
        load_catalog(json.dumps({"models": [{**entry, **change}]}))
    with pytest.raises(CatalogError, match="unique"):
        load_catalog(json.dumps({"models": [entry, entry]}))


def machine(**kw) -> Hardware:
    base = dict(os="Linux", arch="x86_64", cpu_cores=8, ram_total_bytes=32 * GiB, ram_available_bytes=24 * GiB,
                llamacpp_version="0.3.36")
    return Hardware(**{**base, **kw})


def entry(name: str):
    return next(e for e in load_catalog() if e.name == name).model_info()


def test_fit_on_gpu_partly_cpu_only_or_not_at_all():
    rtx = machine(gpus=(GPU("RTX 4060", 8 * GiB, 7 * GiB),), llamacpp_gpu_offload=True, llamacpp_gpu_backend="CUDA")
    small, big = entry("llama-3.2-3b-instruct"), entry("qwen2.5-14b-instruct")
    assert check_fit(rtx, small, n_ctx=8192).verdict == "gpu"
    part = check_fit(rtx, big, n_ctx=8192)
    assert part.verdict == "partial" and 0 < part.n_gpu_layers < 48 and "layers on the GPU" in part.badge
    laptop = machine(ram_total_bytes=8 * GiB, ram_available_bytes=6 * GiB)
    assert check_fit(laptop, small, n_ctx=4096).verdict == "cpu"
    no = check_fit(laptop, big, n_ctx=4096)
    assert no.verdict == "no" and no.need_bytes > 8 * GiB and "RAM" in no.summary
    mac = machine(os="Darwin", arch="arm64", apple_silicon=True, ram_total_bytes=16 * GiB, ram_available_bytes=12 * GiB)
    assert check_fit(mac, entry("qwen2.5-7b-instruct-mlx"), n_ctx=8192).verdict == "gpu"
    assert check_fit(mac, big, n_ctx=32768).verdict == "no"
    # a longer context needs more: the 128k-token KV cache of an 8B model does not fit where 4k does
    eight_b = entry("llama-3.1-8b-instruct")
    assert check_fit(laptop, eight_b, n_ctx=4096).need_bytes < check_fit(laptop, eight_b, n_ctx=131072).need_bytes
