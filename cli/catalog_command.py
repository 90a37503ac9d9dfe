"""`lantern models catalog`: the catalog with fit and estimated speed here; `refresh` rewrites the bundled file
from the Hub (for maintainers)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from basics.errors import LanternError
from cli.table import print_table
from files.owned_files import atomic_write
from machine.hardware import detect
from models.catalog import CatalogError, catalog_json, load_catalog, read_from_hub, remember_figures
from models.fit import check_fit
from models.library import data_dir
from models.speed import estimate_tokens_per_s

GB = 1e9


def run_catalog(args, make_client) -> int:
    if args.action == "refresh":
        return _refresh(args, make_client())
    return _show(args, make_client)


def _show(args, make_client) -> int:
    folder = data_dir()
    entries = load_catalog(figures_dir=folder)
    if args.check:
        client = make_client()
        for i, e in enumerate(entries):
            if e.approximate:
                try:
                    entries[i] = read_from_hub(client, e)
                    remember_figures(folder, entries[i])
                except LanternError as err:
                    print(f"{e.name}: {err}", file=sys.stderr)

    hw = detect()
    rows = []
    for e in entries:
        fit = check_fit(hw, e.model_info(), n_ctx=args.n_ctx)
        speed = estimate_tokens_per_s(hw, size_bytes=e.size_bytes, params_b=e.params_b, active_b=e.active_b,
                                      verdict=fit.verdict, n_gpu_layers=fit.n_gpu_layers, n_layers=e.n_layers)
        rows.append((e.name, ("≈" if e.approximate else "") + f"{e.size_bytes / GB:.1f} GB", e.backend,
                     _params(e), f"{e.context_length // 1024}k",
                     e.tools if e.kind == "chat" else "embedding", "yes" if e.reasoning else "",
                     fit.badge, f"~{speed:.0f}" if speed and e.kind == "chat" else ""))

    print(f"Fit for a {args.n_ctx}-token context on this machine; speeds are estimates from memory bandwidth. "
          "≈: a size not yet read from the Hub (--check reads them).")
    print_table(("name", "size", "backend", "params", "context", "tools", "reasoning", "fit", "tok/s"), rows)
    return 0


def _params(e) -> str:
    return f"{e.params_b:g}B" + (f" ({e.active_b:g}B active)" if e.active_b < e.params_b else "")


def _refresh(args, client) -> int:
    out = Path(args.out) if args.out else Path(__file__).resolve().parents[1] / "models" / "data" / "catalog.json"
    try:  # the file is rewritten in place: its entries are read, then their figures
        text = out.read_text(encoding="utf-8")
        entries, note = load_catalog(text), str(json.loads(text).get("note", ""))
    except (OSError, ValueError, CatalogError) as e:
        print(f"{out} is not a catalog Lantern can read: {e}", file=sys.stderr)
        return 2
    unknown = set(args.only or ()) - {e.name for e in entries}
    if unknown:
        print(f"No catalog entry is named {', '.join(sorted(unknown))}.", file=sys.stderr)
        return 2
    failed = []
    for i, e in enumerate(entries):
        if args.only and e.name not in args.only:
            continue
        try:
            entries[i] = read_from_hub(client, e)
        except LanternError as err:
            failed.append(e.name)
            print(f"{e.name}: kept as it was: {err}", file=sys.stderr)
            continue
        n = entries[i]
        print(f"{e.name}: {e.size_bytes / GB:.2f} -> {n.size_bytes / GB:.2f} GB, KV {e.kv_bytes_per_token} -> "
              f"{n.kv_bytes_per_token} B/token, window {n.window}, state {n.state_bytes / 2**20:.0f} MiB, "
              f"tools {n.tools or '-'}{', reasoning' if n.reasoning else ''} ({n.checked})")

    atomic_write(out, catalog_json(entries, note))
    print(f"Wrote {out}: {len(entries) - len(failed)} entries read from the Hub"
          + (f", {len(failed)} kept as they were ({', '.join(failed)})" if failed else "") + ".")
    return 1 if failed else 0
