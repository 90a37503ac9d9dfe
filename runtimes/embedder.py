"""Embeddings from an embedding model (a GGUF with pooling: BERT, nomic-bert and kin) in its own llama.cpp context,
beside whatever chat model is loaded.

Inputs are token lists, checked before llama.cpp sees them: every id inside the vocabulary, every input within the
context (an encoder reads an input in one pass: a longer one would be cut, and Lantern never cuts silently).
Several inputs run as one llama.cpp batch, one sequence each, while they fit.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from basics.errors import InvalidRequestError, ModelLoadError
from files.gguf_check import read_checked_header
from machine.hardware import llama_gpu_offload
from machine.threads import ThreadChooser
from runtimes.llama_library import check_gguf_file, default_threads, init_backend
from runtimes.runtime import check_token_ids

MAX_SEQUENCES = 64  # inputs in one llama.cpp batch


class Embedder:
    """One embedding model; not thread-safe (one thread owns it, as the chat engine's)."""

    def __init__(self, path: str | Path, *, n_threads: int | None = None):
        # deferred: a broken llama.cpp build fails where a model loads (doctor reports it), not at import
        import llama_cpp

        path = Path(path)
        check_gguf_file(path, check_header=False)  # read and checked once, below
        meta = read_checked_header(path).metadata
        self.n_ctx = int(meta.get(f"{meta.get('general.architecture', '')}.context_length") or 512)
        init_backend()  # its AMX guard covers this Llama() too
        try:
            self._llm = llama_cpp.Llama(str(path), embedding=True, n_ctx=self.n_ctx, n_batch=self.n_ctx,
                                        n_ubatch=self.n_ctx, n_seq_max=MAX_SEQUENCES, verbose=False,
                                        flash_attn=True,  # 1.7x the inputs a second on the CPU (MiniLM, 64 inputs)
                                        n_threads=n_threads or default_threads(),
                                        # small enough to sit beside the chat model on a GPU, where there is one
                                        n_gpu_layers=-1 if llama_gpu_offload() else 0)
        except (ValueError, RuntimeError) as e:
            raise ModelLoadError(f"{path.name} could not be loaded as an embedding model: {e}") from None
        if self._llm.pooling_type() in (llama_cpp.LLAMA_POOLING_TYPE_NONE, llama_cpp.LLAMA_POOLING_TYPE_RANK):
            self.close()
            raise ModelLoadError(f"{path.name} does not pool its tokens into one vector: it is not an embedding "
                                 "model.")
        # Fewer threads while other programs take cores, unless the user set a count (threads.py says why)
        self._threads = ThreadChooser(default_threads()) if n_threads is None else None
        self._threads_set = n_threads or default_threads()
        self.dimensions = self._llm.n_embd()
        self.n_vocab = self._llm.n_vocab()
        # Tokens per pass: every token of a pass attends to all of them (masked by sequence), so the cost grows with
        # the square of the pass; past about a third of the width that outweighs the fewer passes (MiniLM, 384
        # wide, flash attention: 470 inputs/s at 128 tokens a pass, 346 at 512)
        self.pack_tokens = max(64, self.dimensions // 3)

    def tokenize(self, text: str) -> list[int]:
        """`text` as the model reads it, with its special tokens ([CLS] ... [SEP])."""
        return self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)

    def embed(self, inputs: Sequence[Sequence[int]]) -> np.ndarray:
        """One L2-normalized vector per token list, shape (len(inputs), dimensions)."""
        # deferred: a broken llama.cpp build fails where a model loads (doctor reports it), not at import
        import llama_cpp

        for i, tokens in enumerate(inputs):
            if not tokens:
                raise InvalidRequestError(f"input[{i}] is empty.", param="input")
            if len(tokens) > self.n_ctx:
                raise InvalidRequestError(f"input[{i}] is {len(tokens)} tokens; this model reads at most "
                                          f"{self.n_ctx} at once. Split it into shorter pieces.", param="input")
            check_token_ids(tokens, self.n_vocab)
        out = np.empty((len(inputs), self.dimensions), dtype=np.float32)
        llm, batch, start = self._llm, self._llm._batch, 0
        while start < len(inputs):
            end, used = start, 0
            while end < len(inputs) and end - start < MAX_SEQUENCES and \
                    (end == start or used + len(inputs[end]) <= self.pack_tokens):
                used += len(inputs[end])
                end += 1
            batch.reset()
            for seq, tokens in enumerate(inputs[start:end]):
                batch.add_sequence(list(tokens), seq, True)  # every token an output: the pooling reads them all
            llm._ctx.kv_cache_clear()
            if self._threads is not None and self._threads.choose() != self._threads_set:
                self._threads_set = self._threads.threads
                llama_cpp.llama_set_n_threads(llm._ctx.ctx, self._threads_set, self._threads_set)
            llm._ctx.decode(batch)
            for seq in range(end - start):
                vector = np.ctypeslib.as_array(llama_cpp.llama_get_embeddings_seq(llm._ctx.ctx, seq),
                                               shape=(self.dimensions,))
                out[start + seq] = vector
            start = end
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1)

    def close(self) -> None:
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is not None:
            llm.close()
