"""Images for models that see: a vision projector (an mmproj GGUF, llama.cpp's mtmd) beside a llama.cpp model.

An image becomes a run of positions in the KV cache. Lantern names those positions with negative token ids made
from the image's SHA-256 (no vocabulary id is negative), so the engine's prefix matching, state cache and prompt
lookup treat an image like any other run of tokens: the same image in the same place is reused, another image
never is (ids are compared exactly, never by similarity). In rendered prompt text an image stands as its marker,
which the first of its ids spells, so text after an image keeps its exact cached ids too.
"""
from __future__ import annotations

import ctypes
import hashlib
import re
import struct
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from basics.errors import InvalidRequestError, ModelLoadError
from files.gguf_check import check_header
from files.gguf_header import read_gguf_header
from runtimes.llama_library import RuntimeFailure, last_error, log_hook, recent_log

MAX_IMAGE_BYTES = 50 * 1024 * 1024
MAX_POSITIONS = 1 << 16  # positions one image may take (ids keep them in 16 bits)
_KEY_BITS = 40
MARKER = re.compile("\ue000image:([0-9a-f]{16})\ue001")
KEEP_IMAGES = 32  # prepared images kept (their pixels, ready to encode), least recently used dropped


def marker_for(data: bytes) -> str:
    """How an image stands in a message's text until the engine puts its positions there."""
    return f"\ue000image:{hashlib.sha256(data).hexdigest()[:16]}\ue001"


def is_image_token(token: int) -> bool:
    return token < 0


def _ids(key: int, n: int) -> list[int]:
    return [-(1 + (key << 16) + i) for i in range(n)]


def _split(token: int) -> tuple[int, int]:
    """(key, index in its image) of an image position's id."""
    v = -token - 1
    return v >> 16, v & 0xFFFF


@dataclass
class _Image:
    key: int
    marker: str
    n_pos: int
    chunks: object | None  # mtmd_input_chunks_p, freed when the image is dropped


class Projector:
    """One mtmd context for one loaded model; its calls run on the thread that owns the model."""

    def __init__(self, path: Path, model, *, n_threads: int, use_gpu: bool):
        # deferred: a broken llama.cpp build fails where a model loads (doctor reports it), not at import
        import llama_cpp.mtmd_cpp as M

        self._M = M
        self.path = Path(path)
        check_projector_file(self.path)
        params = M.mtmd_context_params_default()
        params.use_gpu = use_gpu
        params.n_threads = n_threads
        params.print_timings = False
        params.warmup = True
        # mtmd logs through its own hook: into Lantern's log (and the errors kept for messages), not stderr
        M.mtmd_log_set(log_hook(), None)
        M.mtmd_helper_log_set(log_hook(), None)
        recent_log().clear()
        self._ctx = M.mtmd_init_from_file(str(self.path).encode(), model, params)
        if not self._ctx:
            raise ModelLoadError(f"llama.cpp could not load the vision projector {self.path.name}: {last_error()}")
        if not M.mtmd_support_vision(self._ctx):
            self.close()
            raise ModelLoadError(f"{self.path.name} is a projector for sound, not images; Lantern runs images only.")
        if M.mtmd_decode_use_mrope(self._ctx):
            # M-RoPE (Qwen2-VL and later) gives image positions several coordinates; the engine counts one each.
            self.close()
            raise ModelLoadError(f"{self.path.name} places image tokens with M-RoPE (Qwen-VL models), which Lantern "
                                 "does not run yet; models with other projectors (Gemma 3, SmolVLM, LLaVA) do.")
        self._lock = threading.Lock()
        self._by_key: dict[int, str] = {}  # every image seen: its key -> its marker (ids stay meaningful)
        self._ready: OrderedDict[int, _Image] = OrderedDict()

    # -- images to positions ----------------------------------------------------------------------

    def prepare(self, data: bytes) -> tuple[str, list[int]]:
        """Decode an image (PNG, JPEG, GIF, BMP...) and count its positions: (its marker, its ids)."""
        if not data:
            raise InvalidRequestError("An image is empty.", param="messages")
        if len(data) > MAX_IMAGE_BYTES:
            raise InvalidRequestError(f"An image is {len(data) / 1e6:.0f} MB; Lantern takes images up to "
                                      f"{MAX_IMAGE_BYTES // 1_000_000} MB.", param="messages")
        digest = hashlib.sha256(data).digest()
        marker = marker_for(data)
        key = int.from_bytes(digest[:5], "big")
        with self._lock:
            while self._by_key.get(key, marker) != marker:  # two images, one key: the later takes the next free one
                key = (key + 1) % (1 << _KEY_BITS)
            image = self._ready.get(key)
            if image is None:
                image = self._tokenize(key, marker, data)
                self._ready[key] = image
                self._by_key[key] = marker
                while len(self._ready) > KEEP_IMAGES:
                    self._free(self._ready.popitem(last=False)[1])
            self._ready.move_to_end(key)
            return marker, _ids(key, image.n_pos)

    def _tokenize(self, key: int, marker: str, data: bytes) -> _Image:
        M = self._M
        buf = (ctypes.c_ubyte * len(data)).from_buffer_copy(data)
        bitmap = M.mtmd_helper_bitmap_init_from_buf(self._ctx, buf, len(data), False)
        if not bitmap:
            raise InvalidRequestError("An image could not be read: it is damaged or not in a format llama.cpp reads "
                                      "(PNG, JPEG, GIF, BMP, TGA, PSD, PNM).", param="messages")
        chunks = M.mtmd_input_chunks_init()
        try:
            part = M.mtmd_input_part()
            part.bitmap = bitmap
            parts = (ctypes.POINTER(M.mtmd_input_part) * 1)(ctypes.pointer(part))
            rc = M.mtmd_tokenize_from_parts(self._ctx, chunks, parts, 1, False)
            if rc != 0:
                raise InvalidRequestError(f"The projector could not prepare an image (code {rc}).", param="messages")
            n_pos = 0
            for i in range(M.mtmd_input_chunks_size(chunks)):
                chunk = M.mtmd_input_chunks_get(chunks, i)
                n_pos += M.mtmd_input_chunk_get_n_pos(chunk)
            if not 0 < n_pos < MAX_POSITIONS:
                raise InvalidRequestError(f"An image takes {n_pos} positions; Lantern takes up to {MAX_POSITIONS - 1}.",
                                          param="messages")
        except BaseException:
            M.mtmd_input_chunks_free(chunks)
            raise
        finally:
            M.mtmd_bitmap_free(bitmap)
        return _Image(key, marker, n_pos, chunks)

    def piece(self, token: int) -> bytes:
        """What an image position spells in prompt text: its marker at the first one, nothing after."""
        key, i = _split(token)
        marker = self._by_key.get(key)
        if marker is None:
            raise InvalidRequestError(f"Token id {token} is no image this model has seen.")
        return marker.encode() if i == 0 else b""

    def runs(self, tokens, lo: int = 0, hi: int | None = None) -> list[tuple[int, int, _Image | None]]:
        """Split tokens[lo:hi] into (start, end, image or None for text); an image must be there whole."""
        hi = len(tokens) if hi is None else hi
        out, i = [], lo
        while i < hi:
            if tokens[i] >= 0:
                j = i
                while j < hi and tokens[j] >= 0:
                    j += 1
                out.append((i, j, None))
                i = j
                continue
            key, first = _split(tokens[i])
            image = self._ready.get(key)
            if image is None or first != 0 or tokens[i:i + image.n_pos] != _ids(key, image.n_pos):
                raise InvalidRequestError("Image positions must come whole, as prepare() gave them.")
            out.append((i, i + image.n_pos, image))
            i += image.n_pos
        return out

    def evaluate(self, image: _Image, lctx, n_past: int, seq_id: int, n_batch: int) -> int:
        """Encode `image` and put its positions in the cache at n_past; returns the new n_past."""
        M = self._M
        for i in range(M.mtmd_input_chunks_size(image.chunks)):
            chunk = M.mtmd_input_chunks_get(image.chunks, i)
            new_past = ctypes.c_int32(n_past)
            rc = M.mtmd_helper_eval_chunk_single(self._ctx, lctx, chunk, n_past, seq_id, n_batch, False,
                                                 ctypes.byref(new_past))
            if rc != 0:
                raise RuntimeFailure(f"llama.cpp failed to encode an image (code {rc}).")
            n_past = new_past.value
        return n_past

    def _free(self, image: _Image) -> None:
        if image.chunks is not None:
            self._M.mtmd_input_chunks_free(image.chunks)
            image.chunks = None

    def close(self) -> None:
        for image in getattr(self, "_ready", {}).values():
            self._free(image)
        if getattr(self, "_ready", None):
            self._ready.clear()
        if self._ctx:
            self._M.mtmd_free(self._ctx)
            self._ctx = None


def png_bytes(pixels) -> bytes:
    """A PNG of an (height, width, 3) uint8 array, written without an imaging library."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def probe_image() -> bytes:
    """The small grey image a new projector first encodes in a child process (runtimes/load_probe.py)."""
    return png_bytes(np.full((16, 16, 3), 128, dtype=np.uint8))


def image_start(tokens, k: int) -> int:
    """`k`, moved back to the start of the image it falls inside (a cache is never cut through an image)."""
    while 0 < k < len(tokens) and tokens[k] < 0 and _split(tokens[k])[1] != 0:
        k -= 1
    return k


# -- the projector file, checked before llama.cpp reads it -------------------------------------------

_NEEDED = ("clip.vision.embedding_length", "clip.vision.attention.head_count", "clip.vision.block_count",
           "clip.vision.image_size", "clip.vision.patch_size")


def projector_header(path: Path):
    """The GGUF header of `path` if it is a vision projector (general.architecture "clip"), else None."""
    try:
        header = read_gguf_header(path)
    except (OSError, ValueError, RecursionError):
        return None
    return header if header.metadata.get("general.architecture") == "clip" else None


def check_projector_file(path: Path) -> None:
    """Refuse a projector llama.cpp would assert on (GGML_ASSERT aborts the process) with a message."""
    name = path.name
    if not path.is_file():
        raise ModelLoadError(f"The vision projector {path} is not there (or is not a file).")
    header = projector_header(path)
    if header is None:
        raise ModelLoadError(f"{name} is not a vision projector (a GGUF whose architecture is \"clip\").")
    meta, types = header.metadata, header.types or {}
    if meta.get("clip.has_vision_encoder") is not True or types.get("clip.has_vision_encoder") != 7:
        raise ModelLoadError(f"{name} has no vision encoder (clip.has_vision_encoder), so it cannot read images.")
    for key in _NEEDED:
        value = meta.get(key)
        if types.get(key) not in (4, 5, 10, 11) or not isinstance(value, int) or not 0 < value <= 65536:
            raise ModelLoadError(f"{name} cannot be loaded: {key} is missing or out of range.")
    if meta["clip.vision.patch_size"] > meta["clip.vision.image_size"]:
        raise ModelLoadError(f"{name} cannot be loaded: its patches are larger than its images.")
    if meta["clip.vision.embedding_length"] % meta["clip.vision.attention.head_count"]:
        raise ModelLoadError(f"{name} cannot be loaded: its embedding does not split into its attention heads.")
    check_header(header, file_size=path.stat().st_size, name=name, projector=True)
