"""What clients of llama.cpp's server reach for beside the chat APIs: `POST /tokenize`, `POST /detokenize`, and
`GET /metrics` in Prometheus' text format. The key rules are the API's."""
from __future__ import annotations

import threading
from bisect import bisect_left

from fastapi import Depends, FastAPI
from fastapi.responses import PlainTextResponse
from pydantic import Field

from app.server.admission import admit
from app.server.request_parts import RequestModel
from runtimes.runtime import check_token_ids

TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)  # seconds
SPEED_BUCKETS = (1, 2.5, 5, 10, 20, 40, 80, 160, 320)  # tokens a second


class TokenizeRequest(RequestModel):
    content: str
    add_special: bool = False  # the model's BOS token first, as the prompt would have it
    with_pieces: bool = False  # each token's text beside its id
    model: str = ""


class DetokenizeRequest(RequestModel):
    tokens: list[int] = Field(max_length=1 << 20)
    model: str = ""


class Histogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.buckets, self.counts, self.sum, self.count = buckets, [0] * len(buckets), 0.0, 0

    def observe(self, value: float) -> None:
        for i in range(bisect_left(self.buckets, value), len(self.buckets)):
            self.counts[i] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out = [f'{name}_bucket{{le="{b:g}"}} {c}' for b, c in zip(self.buckets, self.counts)]
        return out + [f'{name}_bucket{{le="+Inf"}} {self.count}', f"{name}_sum {self.sum:.6f}",
                      f"{name}_count {self.count}"]


class Metrics:
    """Counters fed by the request log and each finished reply (any thread)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = {}
        self.totals = dict(prompt_tokens=0, completion_tokens=0, cached_tokens=0, restored_tokens=0,
                           drafted_tokens=0, accepted_tokens=0, replies=0, restored_replies=0)
        self.by_source: dict[str, list[int]] = {}  # draft source -> [drafted, accepted]
        self.ttft = Histogram(TTFT_BUCKETS)
        self.speed = Histogram(SPEED_BUCKETS)

    def request(self, entry: dict) -> None:
        # the path as routed, not as sent: a client cannot grow the label set without bound
        path = entry["path"] if entry["path"] in KNOWN_PATHS else "other"
        key = (entry["method"] if entry["method"] in ("GET", "POST", "DELETE") else "other", path, entry["status"])
        with self._lock:
            self.requests[key] = self.requests.get(key, 0) + 1

    def reply(self, figures: dict) -> None:
        s = figures["stats"]
        with self._lock:
            t = self.totals
            for name in ("prompt_tokens", "completion_tokens", "cached_tokens", "restored_tokens", "drafted_tokens",
                         "accepted_tokens"):
                t[name] += getattr(s, name)
            for source, (drafted, accepted) in s.drafts_by_source.items():
                both = self.by_source.setdefault(source, [0, 0])
                both[0] += drafted
                both[1] += accepted
            t["replies"] += 1
            t["restored_replies"] += s.restored_tokens > 0
            if s.completion_tokens:
                self.ttft.observe(s.ttft_ms / 1000)
                self.speed.observe(s.decode_tokens_per_s)

    def text(self, service) -> str:
        with self._lock:
            t = dict(self.totals)
            lines = ["# HELP lantern_requests_total Requests answered, by method, path and status.",
                     "# TYPE lantern_requests_total counter"]
            lines += [f'lantern_requests_total{{method="{m}",path="{p}",status="{st}"}} {n}'
                      for (m, p, st), n in sorted(self.requests.items())]
            for name, what in (("prompt_tokens", "Prompt tokens of finished replies."),
                               ("completion_tokens", "Tokens written."),
                               ("cached_tokens", "Prompt tokens reused from the KV cache (live or restored)."),
                               ("restored_tokens", "Prompt tokens restored from a saved conversation state."),
                               ("drafted_tokens", "Prompt lookup: tokens proposed for verification."),
                               ("accepted_tokens", "Prompt lookup: drafted tokens the model agreed with.")):
                lines += [f"# HELP lantern_{name}_total {what}", f"# TYPE lantern_{name}_total counter",
                          f"lantern_{name}_total {t[name]}"]
            lines += _by_source(self.by_source)
            ratios = (("kv_reuse_ratio", "Share of prompt tokens reused from the KV cache.", t["cached_tokens"],
                       t["prompt_tokens"]),
                      ("state_cache_hit_ratio", "Share of replies whose prompt began from a saved state.",
                       t["restored_replies"], t["replies"]),
                      ("lookup_acceptance_ratio", "Share of drafted tokens accepted.", t["accepted_tokens"],
                       t["drafted_tokens"]))
            for name, what, part, whole in ratios:
                lines += [f"# HELP lantern_{name} {what}", f"# TYPE lantern_{name} gauge",
                          f"lantern_{name} {part / whole if whole else 0:.6f}"]
            lines += ["# HELP lantern_time_to_first_token_seconds Time to the first token of a reply.",
                      "# TYPE lantern_time_to_first_token_seconds histogram",
                      *self.ttft.lines("lantern_time_to_first_token_seconds"),
                      "# HELP lantern_decode_tokens_per_second Decode speed of a reply.",
                      "# TYPE lantern_decode_tokens_per_second histogram",
                      *self.speed.lines("lantern_decode_tokens_per_second")]
        lines += ["# HELP lantern_queue_depth Requests queued or running on the model.",
                  "# TYPE lantern_queue_depth gauge", f"lantern_queue_depth {service.in_flight}",
                  "# HELP lantern_model_ready Whether the model can answer (1) or not (0).",
                  "# TYPE lantern_model_ready gauge",
                  f'lantern_model_ready{{model="{_label(service.model or "")}"}} {int(service.status == "ready")}']
        return "\n".join(lines) + "\n"


KNOWN_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/messages", "/v1/messages/count_tokens",
                         "/v1/responses", "/v1/models", "/v1/embeddings", "/health", "/metrics", "/tokenize",
                         "/detokenize"})


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")[:200]


def add_extra_routes(app: FastAPI, service, auth, metrics: Metrics, wait_s: float) -> None:
    @app.post("/tokenize", dependencies=[Depends(auth)])
    async def tokenize(body: TokenizeRequest) -> dict:
        def run(engine):
            rt = engine.runtime
            ids = rt.tokenize(body.content, add_bos=body.add_special and rt.special.add_bos, parse_special=True)
            if not body.with_pieces:
                return ids
            return [{"id": t, "piece": rt.token_bytes(t).decode("utf-8", "replace")} for t in ids]

        tokens = await admit(service, body.model or service.model or "", run, wait_s=wait_s, how=service.call)
        return {"tokens": await tokens}

    @app.post("/detokenize", dependencies=[Depends(auth)])
    async def detokenize(body: DetokenizeRequest) -> dict:
        def run(engine):
            check_token_ids(body.tokens, engine.runtime.n_vocab)  # an id past the vocabulary would abort GGML
            return engine.runtime.detokenize(body.tokens)

        text = await admit(service, body.model or service.model or "", run, wait_s=wait_s, how=service.call)
        return {"content": await text}

    @app.get("/metrics", dependencies=[Depends(auth)])
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.text(service), media_type="text/plain; version=0.0.4")


def _by_source(by_source: dict[str, list[int]]) -> list[str]:
    """Drafted and accepted tokens by where the drafts came from (lookup, prediction, draft model)."""
    lines = []
    for i, (name, what) in enumerate((("draft_tokens", "Tokens drafted, by source."),
                                      ("draft_accepted_tokens", "Drafted tokens accepted, by source."))):
        lines += [f"# HELP lantern_{name}_total {what}", f"# TYPE lantern_{name}_total counter"]
        lines += [f'lantern_{name}_total{{source="{source}"}} {both[i]}' for source, both in sorted(by_source.items())]
    return lines
