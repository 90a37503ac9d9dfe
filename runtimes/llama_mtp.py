"""A model's multi-token-prediction (MTP) heads drafting for it, as llama-server's draft-mtp does
(common/speculative.cpp in the llama.cpp that llama-cpp-python vendors).

The heads are the model's own last block(s) (`{arch}.nextn_predict_layers`), loaded with `load_mtp` and run in a
second context of the same model (LLAMA_CONTEXT_TYPE_MTP). Their input at a position is the token there and the
model's last hidden state one position before it ("h_nextn", which the model's context outputs for every token once
asked). So the heads' context follows the model's: after every batch the model computes, its tokens go to the heads
paired with the hidden states shifted by one (`follow`), and a rejected draft is cut from both (`cut`). A draft
starts from the token the model chose and the hidden state of the last position, and each drafted token feeds the
next step with the hidden state the heads output for it (`draft`). A model with several trained heads (MiMo-V2,
Step-3.5, Hunyuan) chains them as llama-server does: each batch goes through every head's block, and head i drafts
the i-th token over the whole draft so far. Gemma 4's heads ship as a separate GGUF, its "assistant"
(gemma4-assistant): a context of that model made with ctx_other = the model's context reads the model's own cache
(its last windowed and last full layer), so nothing follows but the hidden states, and every drafted token sits at
the same position, the next one (`shared`).

llama-cpp-python binds the llama_batch_ext functions and llama_process; the staging functions that switch the hidden
states on and read them (src/llama-ext.h) are exported by libllama only under their C++ names, loaded here by those.
This module is the binding and the bookkeeping; engine/ decides when drafting pays.
"""
from __future__ import annotations

import ctypes
from collections.abc import Sequence

import numpy as np

from basics.errors import ModelLoadError

# the staging functions, by their C++ (Itanium-mangled) names in libllama
STAGING = {
    "set_embeddings_nextn": ("_Z26llama_set_embeddings_nextnP13llama_contextbb",
                             [ctypes.c_void_p, ctypes.c_bool, ctypes.c_bool], None),
    "get_embeddings_nextn": ("_Z26llama_get_embeddings_nextnP13llama_context",
                             [ctypes.c_void_p], ctypes.POINTER(ctypes.c_float)),
    "get_embeddings_nextn_ith": ("_Z30llama_get_embeddings_nextn_ithP13llama_contexti",
                                 [ctypes.c_void_p, ctypes.c_int32], ctypes.POINTER(ctypes.c_float)),
    "set_nextn_layer_offset": ("_Z28llama_set_nextn_layer_offsetP13llama_contexti",
                               [ctypes.c_void_p, ctypes.c_int32], None),
}
# the functions llama-cpp-python binds, and which the heads need
BOUND = ("llama_model_n_layer_nextn", "llama_batch_ext_init", "llama_batch_ext_free", "llama_batch_ext_clear",
         "llama_batch_ext_add_token", "llama_batch_ext_set_pos", "llama_batch_ext_set_embd_token",
         "llama_batch_ext_set_output_logits", "llama_process", "llama_embd", "LLAMA_CONTEXT_TYPE_MTP")


class MtpUnavailable(ModelLoadError):
    """This llama.cpp, or this model, cannot draft with MTP heads; the message says what is missing."""


ASSISTANT_ARCH = "gemma4-assistant"  # a separate GGUF of MTP heads, for the Gemma 4 model it was trained with
ASSISTANT_TARGETS = ("gemma4",)


def mtp_layers(metadata: dict) -> int:
    """How many MTP blocks a GGUF's metadata says it carries (0: none; an assistant GGUF carries only them)."""
    if is_assistant(metadata):
        return 0
    value = metadata.get(f"{metadata.get('general.architecture')}.nextn_predict_layers", 0)
    return value if isinstance(value, int) and value > 0 else 0


def is_assistant(metadata: dict) -> bool:
    """Whether a GGUF is a Gemma 4 assistant: MTP heads that draft for another model and cannot run alone."""
    return metadata.get("general.architecture") == ASSISTANT_ARCH


def check_assistant(assistant: dict, model: dict, *, assistant_name: str, model_name: str) -> None:
    """MtpUnavailable unless the `assistant` GGUF's metadata fits the `model`'s: the family, the hidden size it
    reads (embedding_length_out) and the vocabulary size."""
    arch = model.get("general.architecture")
    if arch not in ASSISTANT_TARGETS:
        raise MtpUnavailable(f"{assistant_name} is a Gemma 4 assistant: it drafts for Gemma 4 models, and "
                             f"{model_name} is {arch or 'of no known architecture'}.")
    wants, has = assistant.get(f"{ASSISTANT_ARCH}.embedding_length_out"), model.get(f"{arch}.embedding_length")
    if not isinstance(wants, int) or wants != has:
        raise MtpUnavailable(f"{assistant_name} was trained for a Gemma 4 of hidden size {wants}, and {model_name}'s "
                             f"is {has}: choose the assistant made for this model.")
    a, m = (_count(x.get("tokenizer.ggml.tokens")) for x in (assistant, model))
    if a and m and a != m:
        raise MtpUnavailable(f"{assistant_name} has {a} tokens and {model_name} {m}: not the same vocabulary.")


def _count(value) -> int:
    """An array's length from a GGUF header's metadata (long arrays are kept as their length only)."""
    return value if isinstance(value, int) else len(value) if isinstance(value, (list, tuple)) else 0


def staging_functions(C) -> dict:
    """The staging functions from llama-cpp-python's libllama (`C`: llama_cpp or llama_cpp.llama_cpp), typed; MtpUnavailable
    naming every one that is missing, bound or exported."""
    missing = [name for name in BOUND if not hasattr(C, name)]
    lib = getattr(getattr(C, "llama_cpp", C), "_lib", None)  # the package's or the module's CDLL
    found = {}
    for name, (symbol, args, result) in STAGING.items():
        try:
            fn = getattr(lib, symbol)
        except AttributeError:
            missing.append(f"llama_{name} (exported as {symbol})")
            continue
        fn.argtypes, fn.restype = args, result
        found[name] = fn
    if missing:
        raise MtpUnavailable("This llama.cpp cannot draft with MTP heads: it lacks " + ", ".join(missing) + ".")
    return found


class MtpHeads:
    """The MTP heads of the model loaded in `model` (a llama_model* loaded with load_mtp, or a Gemma 4 assistant's
    with `shared`), drafting for the sequence 0 of `target` (its llama_context*). Owns its own context, and with
    `owns_model` the assistant's model; `close()` frees them."""

    def __init__(self, C, model, target, *, n_ctx: int, n_batch: int, n_threads: int, shared: bool = False,
                 owns_model: bool = False):
        self._C = C
        self._fn = staging_functions(C)
        self._model = model if owns_model else None
        self.shared = shared
        self.n_layers = int(C.llama_model_n_layer_nextn(model))
        target_model = C.llama_get_model(target)
        # the blocks a pass of the model runs (its own heads not among them): what one of the heads' passes costs
        # is counted against it
        self.n_model_layers = int(C.llama_model_n_layer(target_model)) - (0 if shared else self.n_layers)
        # Several trained heads (MiMo-V2, Step-3.5, Hunyuan): llama.cpp chains them, head i drafting the i-th token
        # ahead, each over the whole draft so far (llama-server's draft-mtp does the same). An assistant's blocks
        # run together in each pass.
        self.chained = self.n_layers > 1 and not shared
        if self.n_layers < 1:
            raise MtpUnavailable("This model has no MTP heads (its GGUF has no nextn_predict_layers), or they were "
                                 "not loaded.")
        self.n_embd = int(C.llama_model_n_embd_out(model))
        if self.n_embd != int(C.llama_model_n_embd_out(target_model)):
            raise MtpUnavailable(f"The MTP heads read hidden states of {self.n_embd} values, and the model's have "
                                 f"{int(C.llama_model_n_embd_out(target_model))}.")
        self.n_vocab = int(C.llama_vocab_n_tokens(C.llama_model_get_vocab(model)))
        params = C.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = n_ctx, n_batch, n_batch
        params.n_threads = params.n_threads_batch = n_threads
        params.ctx_type = C.LLAMA_CONTEXT_TYPE_MTP
        if shared:
            params.ctx_other = target
        self._ctx = C.llama_init_from_model(model, params)
        if not self._ctx:
            raise MtpUnavailable("llama.cpp could not make a context for this model's MTP heads.")
        self._target = target
        self._fn["set_embeddings_nextn"](target, True, False)  # the model outputs h for every token it computes
        self._fn["set_embeddings_nextn"](self._ctx, True, True)  # the heads: for the rows asked for
        self._mem = C.llama_get_memory(self._ctx)
        self._batch = C.llama_batch_ext_init(self._ctx)  # of n_batch entries
        self.n_batch = n_batch
        self._tokens: list[int] = []  # what the heads' cache holds, position by position (-1: a token not known)
        self._pending = np.zeros(self.n_embd, np.float32)  # the model's h at the last of those (zeros: not known)
        self._rows = np.zeros((0, self.n_embd), np.float32)  # h of the model's last batch
        self._rows_start = 0
        self._keep: list[np.ndarray] = []  # the rows a batch points at, alive until it is processed

    @property
    def relative_cost(self) -> float:
        """A pass of the heads against one of the model (nominal, for seeded and greedy replies): their blocks and
        the output layer, against the model's blocks and that layer."""
        return (self.n_layers + 1) / (max(1, self.n_model_layers) + 1)

    @property
    def length(self) -> int:
        return len(self._tokens)

    @property
    def last_hidden(self) -> np.ndarray:
        """The model's h at the last position the heads hold (zeros where not known): a draft's starting point."""
        return self._pending.copy()

    def follow(self, tokens: Sequence[int], start: int) -> None:
        """The model has just computed `tokens` at positions start..: pair each with the model's h one position
        before it and run them through the heads, so that their cache holds these positions too."""
        n = len(tokens)
        if n == 0:
            return
        h = np.ctypeslib.as_array(self._fn["get_embeddings_nextn"](self._target), shape=(n, self.n_embd))
        rows = np.array(h, dtype=np.float32)  # copied: the model's next batch overwrites it
        self._cut(start)
        if self.length < start:  # positions the heads never saw (a state restored into the model)
            self._fill([-1] * (start - self.length))
        previous = self._pending
        # chained: every head's layer gets the batch; an assistant reads the model's cache, and computes nothing
        for head in range(0 if self.shared else self.n_layers if self.chained else 1):
            self._clear()
            for k, token in enumerate(tokens):
                self._add(int(token), start + k, previous if k == 0 else rows[k - 1], output=False)
            if self.chained:
                self._C.llama_memory_seq_rm(self._mem, 0, start, -1)
            self._process(head)
        self._tokens += [int(t) for t in tokens]
        self._pending = rows[-1].copy()
        self._rows, self._rows_start = rows, start

    def draft(self, context: Sequence[int], limit: int, pick=None) -> tuple[list[int], list]:
        """Up to `limit` tokens after `context` (the model has computed all of it but its last token, which it has
        just chosen), and each one's distribution. `pick(logits, context) -> (token, distribution)` draws them;
        without it they are greedy (distributions None). The heads' cache is first brought in step with
        context[:-1]: a cut where the model cut (a rejected draft, another conversation), and positions it never
        saw filled in."""
        if not context or limit <= 0:
            return [], []
        known = [int(t) for t in context[:-1]]
        same = 0
        for a, b in zip(self._tokens, known):
            if a != b:
                break
            same += 1
        self._cut(same)
        if self.length < len(known):
            self._fill(known[self.length:])
        tokens, dists, h, token = [], [], self._pending, int(context[-1])
        seen = [*known, token]
        rows = [h]  # chained heads: each step reads the whole draft so far, each token with its h
        if self.chained:
            limit = min(limit, self.n_layers)  # one head a drafted token
        try:
            for step in range(limit):
                self._clear()
                if self.chained:
                    self._C.llama_memory_seq_rm(self._mem, 0, self.length, -1)
                    for t, (tok, row) in enumerate(zip(seen[len(known):], rows)):
                        index = self._add(tok, self.length + t, row, output=t == len(rows) - 1)
                else:  # an assistant drafts every token at the next position (it adds nothing to the cache)
                    index = self._add(token, self.length + (0 if self.shared else step), h, output=True)
                self._process(step if self.chained else 0)
                logits = np.ctypeslib.as_array(self._C.llama_get_logits_ith(self._ctx, index), shape=(self.n_vocab,))
                token, dist = (int(np.argmax(logits)), None) if pick is None else pick(logits, seen)
                tokens.append(token)
                dists.append(dist)
                seen.append(token)
                h = np.array(np.ctypeslib.as_array(self._fn["get_embeddings_nextn_ith"](self._ctx, index),
                                                   shape=(self.n_embd,)), dtype=np.float32)
                rows.append(h)
        finally:
            self._C.llama_memory_seq_rm(self._mem, 0, self.length, -1)  # the drafted positions are not the model's
        return tokens, dists

    def close(self) -> None:
        if self._batch is not None:
            self._C.llama_batch_ext_free(self._batch)
            self._batch = None
        if self._ctx is not None:
            self._fn["set_embeddings_nextn"](self._target, False, False)
            self._C.llama_free(self._ctx)
            self._ctx = None
        if self._model is not None:  # an assistant's model, after its context
            self._C.llama_model_free(self._model)
            self._model = None

    def _cut(self, length: int) -> None:
        if length >= self.length:
            return
        self._C.llama_memory_seq_rm(self._mem, 0, length, -1)
        del self._tokens[length:]
        i = length - 1 - self._rows_start
        self._pending = (self._rows[i].copy() if length and 0 <= i < len(self._rows)
                         else np.zeros(self.n_embd, np.float32))

    # -- batches --------------------------------------------------------------------------------------------------

    def _fill(self, tokens: list[int]) -> None:
        """Positions the heads never saw with the model's h (a restored state, a conversation switched to): their
        tokens (or 0 where not known) with zeros for the h, so that the cache's positions stay consecutive
        (llama.cpp refuses a gap); drafts that read them are only less often right."""
        zero = np.zeros(self.n_embd, np.float32)
        for lo in range(0 if not self.shared else len(tokens), len(tokens), self.n_batch):
            for head in range(self.n_layers if self.chained else 1):
                self._clear()
                for k, token in enumerate(tokens[lo:lo + self.n_batch]):
                    self._add(max(token, 0), self.length + lo + k, zero, output=False)
                if self.chained:
                    self._C.llama_memory_seq_rm(self._mem, 0, self.length + lo, -1)
                self._process(head)
        self._tokens += tokens
        self._pending = zero

    def _clear(self) -> None:
        self._C.llama_batch_ext_clear(self._batch)
        self._keep.clear()

    def _add(self, token: int, pos: int, h: np.ndarray, *, output: bool) -> int:
        C = self._C
        index = C.llama_batch_ext_add_token(self._batch, 0, token)
        if index < 0:
            raise MtpUnavailable(f"llama.cpp refused a token for the MTP heads (error {index}).")
        C.llama_batch_ext_set_pos(self._batch, index, (C.llama_pos * 4)(pos, 0, 0, 0))
        row = np.ascontiguousarray(h, dtype=np.float32)
        self._keep.append(row)
        embd = C.llama_embd(row.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), 1, self.n_embd)
        if not C.llama_batch_ext_set_embd_token(self._batch, index, embd):
            raise MtpUnavailable("llama.cpp refused the hidden state for the MTP heads.")
        if output:
            C.llama_batch_ext_set_output_logits(self._batch, index, True)
        return index

    def _process(self, head: int = 0) -> None:
        """Run the batch through MTP block `head` (chained heads; the others have one)."""
        if self.chained:
            self._fn["set_nextn_layer_offset"](self._ctx, head)
        try:
            rc = self._C.llama_process(self._ctx, self._C.LLAMA_PROCESS_TYPE_DECODE, self._batch)
        finally:
            if self.chained:
                self._fn["set_nextn_layer_offset"](self._ctx, 0)
        if rc != 0:
            raise MtpUnavailable(f"The MTP heads could not compute their batch (llama.cpp returned {rc}).")
