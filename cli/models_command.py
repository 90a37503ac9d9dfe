"""`lantern models`: list, search, info, pull, import, rm, convert."""
from __future__ import annotations

import sys
import threading
from pathlib import Path

from tqdm import tqdm

from basics.errors import LanternError
from cli.catalog_command import run_catalog
from cli.table import print_table
from machine.hardware import detect
from models.convert import convert_gguf_to_mlx
from models.fit import check_fit
from models.hub import HubClient
from models.hub_errors import DownloadCancelled
from models.library import ModelLibrary, resolve_model

GB = 1e9


def run_models(args) -> int:
    library = ModelLibrary()
    if args.models_command == "list":
        rows = [(m.name, m.backend, m.quant, f"{m.size_bytes / 1e9:.2f} GB", f"{m.context_length}",
                 m.architecture, "yes" if m.chat_template else "no", m.source + (" (link)" if m.linked else ""))
                for m in library.list()]
        print_table(("name", "backend", "quant", "size", "context", "architecture", "template", "source"), rows)
        return 0
    if args.models_command == "import":
        have = library.same_file_as(args.path) if Path(args.path).expanduser().is_file() else None
        if have is not None:
            print(f"Note: this file is already in Lantern as {have}; importing it again makes a second model of it.",
                  file=sys.stderr)
        for m in library.import_path(args.path, link=args.link, name=args.name):
            print(f"Imported {m.name} ({m.quant}, {m.size_bytes / 1e9:.2f} GB{', linked' if m.linked else ''})")
        return 0
    if args.models_command == "search":
        return _search(args)
    if args.models_command == "catalog":
        return run_catalog(args, _hub)
    if args.models_command == "info":
        return _info(args)
    if args.models_command == "pull":
        return _pull(args)
    if args.models_command == "rm":
        freed = library.remove(args.name)
        print(f"Removed {args.name}; {freed / 1e9:.2f} GB freed")
        return 0
    if args.models_command == "convert":
        src = resolve_model(args.path)
        out = Path(args.out) if args.out else src.with_name(src.stem + "-mlx")
        convert_gguf_to_mlx(src, out, overwrite=args.force)
        print(f"Wrote the MLX model to {out}", file=sys.stderr)
        print(out)
        return 0
    raise AssertionError(args.models_command)


def _hub():
    return HubClient()


def _search(args) -> int:
    found = _hub().search(args.query, format="mlx" if args.mlx else "gguf", limit=args.limit)
    if not found:
        print("Nothing found.")
        return 0
    print_table(("repository", "downloads", "likes", "gated"),
                 [(m.repo, str(m.downloads), str(m.likes), "yes" if m.gated else "") for m in found])
    return 0


def _info(args) -> int:
    hub, hw = _hub(), detect()
    listing = hub.listing(args.repo)
    rows = []
    for choice in listing.choices:
        tools = "?"
        try:
            info = hub.describe(listing, choice)
            tools = info.tool_format + (" + reasoning" if info.reasoning else "")
            fit = check_fit(hw, info, n_ctx=args.n_ctx)
            verdict = f"{fit.badge} ({fit.summary})"
        except LanternError as e:
            verdict = f"unknown: {e}"
        parts = f"{len(choice.files)} files" if len(choice.files) > 1 else choice.files[0]
        rows.append((choice.label, f"{choice.size_bytes / GB:.2f} GB", verdict, tools, parts))
    print(f"{args.repo} (commit {str(listing.commit)[:12]}), fit for a {args.n_ctx}-token context on this machine:")
    print_table(("quant", "size", "fit", "tool calls", "files"), rows)
    for name in listing.refused:
        print(f"Refused: the file name {ascii(name)} may not become a path here; it is not offered.", file=sys.stderr)
    return 0


def _pull(args) -> int:
    cancel = threading.Event()
    bar = _ProgressBar()
    hub = _hub()
    try:
        model = hub.pull(args.spec, name=args.name, on_progress=bar.show, cancel=cancel)
    except (KeyboardInterrupt, DownloadCancelled):
        bar.end()
        print("Stopped; `lantern models pull` again resumes the download.", file=sys.stderr)
        return 130
    bar.end()
    print(f"Pulled {model.name} ({model.quant}, {model.size_bytes / GB:.2f} GB) into {model.path}")
    for f in hub.unchecked:
        print(f"Note: the Hub publishes no hash for {f}; its content was not checked.", file=sys.stderr)
    return 0


class _ProgressBar:
    """A tqdm bar on stderr in bytes: percent, size, speed and time left, fed by the pull's progress reports."""

    def __init__(self):
        self._bar = None

    def show(self, p) -> None:
        if self._bar is None:
            self._bar = tqdm(total=p.total_bytes or None, unit="B", unit_scale=True, unit_divisor=1000,
                             file=sys.stderr, mininterval=0.1, dynamic_ncols=True, desc="pulling")
        if p.total_bytes and self._bar.total != p.total_bytes:
            self._bar.total = p.total_bytes  # a file announced later adds to the whole
        self._bar.update(p.done_bytes - self._bar.n)

    def end(self) -> None:
        if self._bar is not None:
            self._bar.close()
