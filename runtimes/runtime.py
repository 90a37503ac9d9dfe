"""The small interface every runtime implements, and that only the engine uses."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from basics.errors import InvalidRequestError, ModelLoadError


# The KV cache's element types (llama.cpp's type_k/type_v): ggml's type id, and bytes per element. Quantized ones
# take half (q8_0) or about a quarter (q4_0) of f16's memory, and need flash attention (llama.cpp's V cache).
KV_CACHE_TYPES = {"f16": (1, 2.0), "q8_0": (8, 34 / 32), "q4_0": (2, 18 / 32)}
MTP_CHOICES = ("auto", "on", "off")


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model. `n_ctx=0` means the model's trained context, capped at 8192."""

    n_ctx: int = 4096
    n_gpu_layers: int | None = None  # None: Lantern chooses (models/choice.py); -1: all
    n_threads: int | None = None
    n_batch: int = 512
    flash_attn: bool | None = None  # None: off on the CPU, llama.cpp's choice with GPU layers
    kv_cache_type: str = "f16"  # KV_CACHE_TYPES; q8_0 and q4_0 turn flash attention on
    allow_context_beyond_training: bool = False
    # KV sequences in one context (llama.cpp): several conversations decoded in one batch share the whole context's
    # cells (a unified cache), each with its own positions. 1 is one conversation at a time; 0 lets app/wiring.py
    # choose (4 where llama.cpp can batch the model).
    slots: int = 1
    # A vision projector (an mmproj GGUF) for this model: images in messages become positions in its cache
    # (llama.cpp). None: app/wiring.plan_load looks for one beside the model; "" means none.
    projector: str | None = None
    # A small model with the same vocabulary that drafts tokens for this one to verify (engine/draft_model.py): a
    # name in the library or a path. None: none.
    draft_model: str | None = None
    # Draft with the model's own multi-token-prediction heads (runtimes/llama_mtp.py): "auto" where its GGUF has them
    # and it runs on a GPU (on a CPU drafting rarely pays), "on" wherever it has them, "off". app/wiring.py plans
    # it into load_mtp, which loads the heads' tensors.
    mtp: str = "auto"
    load_mtp: bool = False
    # A Gemma 4 "assistant" GGUF that drafts as the model's MTP heads, reading the model's own cache (set by the
    # plan when the draft model chosen is one; runtimes/llama_mtp.py)
    mtp_assistant: str = ""
    # Helper machines (`lantern worker`, llama.cpp's RPC servers) as "host:port": the model is spread over them and
    # this machine (models/spread.py), and runs in a child process (runtimes/spread_runtime.py), since llama.cpp
    # aborts when a helper goes away. `helper_layers`: the planned layers of each helper device, in order (the
    # helpers', then their devices'); n_gpu_layers then counts every layer not on this machine's CPU.
    helpers: tuple[str, ...] = ()
    helper_layers: tuple[int, ...] = ()
    helpers_when_needed: bool = False  # the helpers of Settings: used only for a model this machine cannot hold
    # Called during the load with 0.0 .. 1.0 (llama.cpp reports it); returning False cancels the load.
    on_progress: Callable[[float], bool | None] | None = field(default=None, compare=False, repr=False)
    # Told what a long load is doing, in words (the window shows it beside the progress): sending a model's share
    # to its helper machines
    on_stage: Callable[[str], None] | None = field(default=None, compare=False, repr=False)

    def validate(self) -> None:
        if self.n_ctx < 0:
            raise ModelLoadError(f"Context size must be positive, got {self.n_ctx}.")
        if self.kv_cache_type not in KV_CACHE_TYPES:
            raise ModelLoadError(f"The KV cache type must be one of {', '.join(KV_CACHE_TYPES)}, got "
                                 f"{self.kv_cache_type!r}.")
        if self.kv_cache_type != "f16" and self.flash_attn is False:
            raise ModelLoadError(f"A {self.kv_cache_type} KV cache needs flash attention (llama.cpp quantizes its V "
                                 "cache only with it): turn flash attention on, or use an f16 cache.")
        if self.mtp not in MTP_CHOICES:
            raise ModelLoadError(f"MTP must be one of {', '.join(MTP_CHOICES)}, got {self.mtp!r}.")
        if self.n_batch < 1:
            raise ModelLoadError(f"Batch size must be at least 1, got {self.n_batch}.")
        if not 0 <= self.slots <= 64:  # 0: Lantern chooses (app/wiring.py), never given to a runtime
            raise ModelLoadError(f"Slots must be between 1 and 64 (or 0: chosen for the model), got {self.slots}.")
        if self.n_threads is not None and not 1 <= self.n_threads <= 512:  # ggml's own limit is 512
            raise ModelLoadError(f"Thread count must be between 1 and 512, got {self.n_threads}.")
        if self.n_gpu_layers is not None and self.n_gpu_layers < -1:
            raise ModelLoadError(f"GPU layers must be -1 (all) or more, got {self.n_gpu_layers}.")
        if self.helper_layers and (len(self.helper_layers) < len(self.helpers)
                                   or any(n < 0 for n in self.helper_layers)):
            raise ModelLoadError("The helpers' layers must be planned for each helper device (models/spread.py).")


@dataclass(frozen=True)
class SpecialTokens:
    bos: int | None
    eos: int | None
    end_of_turn: frozenset[int]  # every token that ends generation (EOS, <|im_end|>, <end_of_turn>...)
    add_bos: bool
    bos_text: str = ""
    eos_text: str = ""
    # Tokens that plain text never becomes (llama.cpp's CONTROL tokens, a tokenizer's special added tokens):
    # the same characters typed by a user must stay text.
    control: frozenset[int] = frozenset()


def check_forward(runtime, tokens: Sequence[int], start: int, rows: Sequence[int] | None) -> list[int]:
    """Check forward()'s arguments against a runtime; returns the rows (default: the last one)."""
    n = len(tokens)
    if n == 0:
        raise InvalidRequestError("forward() needs at least one token.")
    if start != runtime.n_past:
        raise InvalidRequestError(f"forward() must append at {runtime.n_past}, got start={start}.")
    if start + n > runtime.n_ctx:
        raise InvalidRequestError(f"{start + n} tokens do not fit the context of {runtime.n_ctx}.")
    rows = [n - 1] if rows is None else list(rows)
    if any(not 0 <= r < n for r in rows) or len(set(rows)) != len(rows):
        raise InvalidRequestError(f"forward() rows must be distinct indices below {n}.")
    check_token_ids(tokens, runtime.n_vocab)
    return rows


def check_forward_seqs(runtime, items) -> list[tuple[int, list[int], list[int]]]:
    """Check forward_seqs()'s arguments against a multi-sequence runtime (`seq_past`, `slots`); returns them as
    (seq, tokens, rows) with the rows filled in (default: the last). A bad sequence or position would reach a GGML
    assertion in llama.cpp, and corrupt another conversation's cache anywhere."""
    if not items:
        raise InvalidRequestError("forward_seqs() needs at least one sequence.")
    checked, seen = [], set()
    for seq, tokens, rows in items:
        if not (isinstance(seq, (int, np.integer)) and not isinstance(seq, bool) and 0 <= seq < runtime.slots):
            raise InvalidRequestError(f"Sequence {seq!r} is not one of this context's {runtime.slots} slots.")
        seq = int(seq)
        if seq in seen:
            raise InvalidRequestError("forward_seqs() takes each sequence once per call.")
        seen.add(seq)
        n = len(tokens)
        if n == 0:
            raise InvalidRequestError(f"Sequence {seq} was given no tokens.")
        if runtime.seq_past(seq) + n > runtime.n_ctx:
            raise InvalidRequestError(f"{runtime.seq_past(seq) + n} tokens do not fit the context of {runtime.n_ctx}.")
        rows = [n - 1] if rows is None else list(rows)
        if any(not (isinstance(r, (int, np.integer)) and 0 <= r < n) for r in rows) or len(set(rows)) != len(rows):
            raise InvalidRequestError(f"Rows of sequence {seq} must be distinct indices below {n}.")
        check_token_ids(tokens, runtime.n_vocab)
        checked.append((seq, [int(t) for t in tokens], [int(r) for r in rows]))
    return checked


def check_token_ids(tokens: Sequence[int], n_vocab: int) -> None:
    for t in tokens:
        if not (isinstance(t, (int, np.integer)) and 0 <= t < n_vocab):
            raise InvalidRequestError(f"Token id {t!r} is outside this model's vocabulary (0..{n_vocab - 1}).")


class Runtime(Protocol):
    """One loaded model and its KV cache (a single sequence).

    `n_past` is how many tokens the KV cache holds; `forward` appends after them.
    """

    name: str  # "llamacpp", "mlx"
    can_truncate: bool  # False: the cache cannot roll back (some MLX layer types), so no prompt lookup
    on_gpu: bool  # every layer computes on a GPU (CUDA, Metal): a pass of a few tokens costs about what one does
    model_path: Path
    n_ctx: int
    n_ctx_train: int
    n_vocab: int
    n_batch: int
    special: SpecialTokens
    chat_template: str | None

    @property
    def n_past(self) -> int: ...

    def tokenize(self, text: str, *, add_bos: bool, parse_special: bool = True) -> list[int]:
        """`add_bos`: start with BOS if the model asks for one (special.add_bos), as llama.cpp does."""
        ...

    def token_bytes(self, token: int) -> bytes:
        """The raw bytes of one token, special tokens rendered as their text."""
        ...

    def detokenize(self, tokens: Sequence[int]) -> str: ...

    def forward(self, tokens: Sequence[int], start: int, *, rows: Sequence[int] | None = None) -> np.ndarray:
        """Append `tokens` at position `start` (must equal n_past) and return logits.

        Returns an array of shape (len(rows), n_vocab) for the given row indices into `tokens`
        (default: only the last row).
        """
        ...

    def truncate(self, n_keep: int) -> bool:
        """Drop KV entries after the first `n_keep`. False when the runtime cannot (then nothing changed)."""
        ...

    def save_state(self) -> bytes: ...

    def restore_state(self, data: bytes, n_tokens: int) -> None: ...

    def close(self) -> None: ...
