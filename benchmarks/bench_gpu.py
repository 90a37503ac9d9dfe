"""Lantern against llama.cpp's llama-server on one GPU, same libraries, same models, same requests (stdlib only).

    gpu_bench.py --lantern CMD --llama-server PATH --models DIR --out FILE [--parts decode,pld,slots]

Parts: decode (256 greedy tokens, ignore_eos, one client), pld (the copy workload and an open-ended story on the real
SmolLM2: lookup on/off, seeded and not, text compared), slots (1/4/8 streaming clients; one client on 1 and on 8
slots). Each figure is the median of --repeats runs. Run by scripts/gpu-check; stdlib only.
"""
from __future__ import annotations
import argparse
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

STORY = "Once upon a time, in a small village by the sea, there lived an old lighthouse keeper named"
RESULTS: dict = {}


def port() -> int:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


class Srv:
    def __init__(self, name, argv, p, log_dir):
        self.name, self.port = name, p
        self.log = open(os.path.join(log_dir, f"{name}-{p}.log"), "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        t0 = time.time()
        while time.time() - t0 < 180:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{p}/health", timeout=2) as r:
                    st = json.loads(r.read() or b"{}").get("status", "ok")
                if st in ("ok", "ready"):
                    self.ready_s = time.time() - t0
                    return
            except Exception:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{name} not ready in 180 s")

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def stream(self, path, body):
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        t0 = time.perf_counter(); ttft = None; text = []; usage = None; chunks = 0; last = t0
        try:
            r = urllib.request.urlopen(req, timeout=600)
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{self.name} {path}: {e.code} {e.read()[:300]!r}") from None
        with r:
            for raw in r:
                line = raw.decode().strip()
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                ev = json.loads(payload)
                if ev.get("usage"):
                    usage = ev["usage"]
                for ch in ev.get("choices", []):
                    piece = (ch.get("delta") or {}).get("content") or ch.get("text") or ""
                    if piece:
                        chunks += 1
                        last = time.perf_counter()
                        if ttft is None:
                            ttft = last - t0
                        text.append(piece)
        n = (usage or {}).get("completion_tokens") or chunks
        return {"ttft": ttft, "total": time.perf_counter() - t0, "decode": (n - 1) / max(last - t0 - (ttft or 0), 1e-9),
                "tokens": n, "text": "".join(text), "usage": usage}


NAMES: dict = {}


def import_models(args, paths):
    """`lantern models import --link` each file once (the server loads models by name), as a user would."""
    for key, path in paths.items():
        if not os.path.exists(path):
            continue
        name = f"bench-{key}"
        r = subprocess.run([*shlex.split(args.lantern), "models", "import", path, "--link", "--name", name],
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0 and "already" not in (r.stdout + r.stderr):
            print(f"import {key}: {r.returncode} {(r.stdout + r.stderr).strip()[-300:]}", flush=True)
        NAMES[path] = name


def lantern(args, model, *extra):
    p = port()
    return Srv("lantern", [*shlex.split(args.lantern), "serve", "--port", str(p), "--model", NAMES.get(model, model),
                           "--n-ctx", "8192", *shlex.split(os.environ.get("LANTERN_EXTRA", "")), *extra], p, args.logs)


def peer(args, model, *extra):
    p = port()
    return Srv("llama-server", [args.llama_server, "-m", model, "--port", str(p), "-ngl", "99", "-c", "8192",
                                "--jinja", "--no-webui", *extra], p, args.logs)


def med(runs, key):
    return statistics.median(r[key] for r in runs)


def decode(args, name, path):
    body = {"prompt": STORY, "max_tokens": 256, "temperature": 0, "ignore_eos": True}
    row = {}
    for who, make in (("lantern", lambda: lantern(args, path, "--no-prompt-lookup", "--slots", "1")),
                      ("llama-server", lambda: peer(args, path, "-np", "1"))):
        try:
            s = make()
        except Exception as e:
            row[who] = {"error": str(e)}; print(f"decode {who}: {e}", flush=True); continue
        try:
            s.stream("/v1/completions", {**body, "max_tokens": 16})
            runs = [s.stream("/v1/completions", body) for _ in range(args.repeats)]
            row[who] = {"decode_tok_s": med(runs, "decode"), "ttft_ms": 1000 * med(runs, "ttft"), "tokens": runs[0]["tokens"],
                        "ready_s": s.ready_s}
        finally:
            s.close()
    if "decode_tok_s" in row.get("lantern", {}) and "decode_tok_s" in row.get("llama-server", {}):
        row["ratio"] = row["lantern"]["decode_tok_s"] / row["llama-server"]["decode_tok_s"]
    else:
        row["ratio"] = float("nan")
    RESULTS.setdefault("decode", {})[name] = row
    print(f"decode {name}: " + json.dumps(row), flush=True)


def pld(args, path, doc):
    for case in ("copy", "open"):
        _pld(args, path, doc, case)


def _pld(args, path, doc, case):
    src = open(doc).read()[:1800]
    content = f"Repeat the following document exactly.\n\n{src}" if case == "copy" else \
        "Write a long original fairy tale about a lighthouse keeper and a fox."
    msgs = [{"role": "user", "content": content}]
    body = {"messages": msgs, "max_tokens": 400, "temperature": 0}
    row = {}
    configs = [("lantern plain", lambda: lantern(args, path, "--no-prompt-lookup", "--slots", "1"), {}),
               ("lantern lookup", lambda: lantern(args, path, "--prompt-lookup", "--slots", "1"), {}),
               ("lantern lookup seeded", lambda: lantern(args, path, "--prompt-lookup", "--slots", "1"), {"seed": 7}),
               ("llama-server plain", lambda: peer(args, path, "-np", "1"), {}),
               ("llama-server ngram-simple", lambda: peer(args, path, "-np", "1", "--spec-type", "ngram-simple"), {})]
    if case == "open":
        configs = [c for c in configs if "llama-server" not in c[0]]
    for who, make, extra in configs:
        try:
            s = make()
        except Exception as e:
            row[who] = {"error": str(e)}; print(f"pld {who}: {e}", flush=True); continue
        try:
            s.stream("/v1/chat/completions", {**body, **extra, "max_tokens": 8})
            runs = [s.stream("/v1/chat/completions", {**body, **extra}) for _ in range(args.repeats)]
            row[who] = {"tok_s": statistics.median(r["tokens"] / (r["total"] - r["ttft"]) for r in runs),
                        "tokens": runs[0]["tokens"], "text": runs[0]["text"], "usage": runs[0]["usage"],
                        "runs_identical": len({r["text"] for r in runs}) == 1}
        finally:
            s.close()
    base = row.get("lantern plain", {}).get("text", "")
    for who, r in row.items():
        if "text" in r:
            same = os.path.commonprefix([base, r["text"]])
            r["same_prefix"] = len(same) / max(1, len(base))
    for who, r in row.items():
        if "tok_s" in r:
            ref = row["lantern plain" if who.startswith("lantern") else "llama-server plain"].get("tok_s")
            r["speedup"] = r["tok_s"] / ref if ref else None
            print(f"pld {case} {who}: {r['tok_s']:.1f} tok/s, x{r['speedup']:.2f} over its plain, {r['tokens']} tokens, "
                  f"same as Lantern plain {r['same_prefix']:.0%}", flush=True)
    RESULTS.setdefault("pld", {})[case] = {k: {kk: vv for kk, vv in v.items() if kk != "text"} for k, v in row.items()}


def slots(args, name, path):
    prompt = "The history of the lighthouse begins"
    row = {}
    for who, make in (("lantern 1 slot", lambda: lantern(args, path, "--no-prompt-lookup", "--slots", "1")),
                      ("lantern", lambda: lantern(args, path, "--no-prompt-lookup", "--slots", "8")),
                      ("llama-server", lambda: peer(args, path, "-np", "8"))):
        try:
            s = make()
        except Exception as e:
            row[who] = {"error": str(e)}; print(f"slots {who}: {e}", flush=True); continue
        try:
            s.stream("/v1/completions", {"prompt": prompt, "max_tokens": 8, "temperature": 0})
            for n in ((1,) if who.endswith("1 slot") else (1, 4, 8)):
                out = {}

                def one(i):
                    out[i] = s.stream("/v1/completions", {"prompt": f"{prompt} ({i})", "max_tokens": 128,
                                                          "temperature": 0, "ignore_eos": True})
                ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
                t0 = time.perf_counter()
                for t in ts: t.start()
                for t in ts: t.join()
                wall = time.perf_counter() - t0
                row.setdefault(who, {})[n] = {"agg_tok_s": sum(v["tokens"] for v in out.values()) / wall,
                                              "worst_ttft_ms": 1000 * max(v["ttft"] for v in out.values())}
        finally:
            s.close()
    RESULTS.setdefault("slots", {})[name] = row
    for who, r in row.items():
        if "error" in r:
            continue
        print(f"slots {name} {who}: " + ", ".join(f"{n} clients {v['agg_tok_s']:.0f} tok/s (x{v['agg_tok_s'] / r[1]['agg_tok_s']:.2f}, "
                                                   f"worst TTFT {v['worst_ttft_ms']:.0f} ms)" for n, v in r.items()), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lantern", required=True)
    ap.add_argument("--llama-server", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--doc", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--logs", default="/tmp")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--parts", default="decode,pld,slots")
    ap.add_argument("--decode-models", default="smol,1b,8b")
    args = ap.parse_args()
    m = {"smol": os.path.join(args.models, "smol.gguf"), "1b": os.path.join(args.models, "random-llama-1b-Q4_0.gguf"),
         "8b": os.path.join(args.models, "random-llama-8b-Q4_0.gguf")}
    parts = args.parts.split(",")
    import_models(args, m)
    jobs = []
    if "decode" in parts:
        jobs += [(decode, (args, k, m[k])) for k in args.decode_models.split(",") if os.path.exists(m[k])]
    if "pld" in parts and os.path.exists(m["smol"]):
        jobs.append((pld, (args, m["smol"], args.doc)))
    if "slots" in parts:
        jobs += [(slots, (args, k, m[k])) for k in ("1b",) if os.path.exists(m[k])]
    for fn, a in jobs:
        t0 = time.time()
        try:
            fn(*a)
        except Exception as e:
            RESULTS.setdefault("errors", []).append(f"{fn.__name__} {a[1] if len(a) > 1 else ''}: {type(e).__name__}: {e}")
            print(f"ERROR {fn.__name__}: {type(e).__name__}: {e}", flush=True)
        print(f"  ({fn.__name__} took {time.time() - t0:.0f} s)", flush=True)
        json.dump(RESULTS, open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
