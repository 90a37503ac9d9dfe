"""The Hugging Face Hub through huggingface_hub: search, a repository's files by quant, and pulls.

A pull downloads into data/downloads/<repo> (huggingface_hub resumes what an interruption or a crash
left there), checks every file against the sha256 the Hub publishes, and only then moves the folder
into data/models/<name> and registers it: a failed or cancelled pull leaves no model behind.
"""
from __future__ import annotations

import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from tqdm.auto import tqdm

from files.gguf_header import HeaderCut, parse_gguf_header
from files.gguf_split import PART, join_split_gguf
from files.safe_paths import UnsafeName, check_name, check_relative, inside
from models.download_check import HashingFile, TooLong, verify_download
from models.hub_errors import DownloadCancelled, HubError, hub_errors
from models.info import info_from_config, info_from_header
from models.library import LibraryError, LocalModel, ModelLibrary, check_model_name, model_name

QUANT = re.compile(r"(?i)(?:^|[-_./])((?:I?Q\d_(?:K_[SMLX]L?|K|[01]|XXS|XS|S|M|NL))|BF16|F16|F32|Q8_0)(?=[-_./])")
SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")
PREFERRED = ("Q4_K_M", "Q4_K_S", "Q4_0", "Q5_K_M", "Q8_0")


@dataclass(frozen=True)
class HubModel:
    repo: str
    downloads: int
    likes: int
    gated: bool
    tags: tuple[str, ...]


@dataclass(frozen=True)
class FileChoice:
    """One downloadable model in a repository: a GGUF file (all its parts), or a whole MLX repository."""

    label: str  # the quant ("Q4_K_M"), or "mlx"
    files: tuple[str, ...]
    size_bytes: int


@dataclass(frozen=True)
class RepoListing:
    repo: str
    commit: str | None
    choices: list[FileChoice]
    files: dict[str, dict]  # name -> {"size", "sha256" (None for small git files), "blob_id" (git's sha1)}
    refused: tuple[str, ...] = ()  # file names that may not become paths here (shown, never downloaded)
    projectors: tuple[str, ...] = ()  # vision projectors (mmproj GGUFs): one comes with the model pulled


@dataclass(frozen=True)
class DownloadProgress:
    file: str
    done_bytes: int
    total_bytes: int
    bytes_per_s: float

    @property
    def eta_s(self) -> float | None:
        return (self.total_bytes - self.done_bytes) / self.bytes_per_s if self.bytes_per_s > 0 else None


class HubClient:
    def __init__(self, *, endpoint: str | None = None, token: str | None = None, library: ModelLibrary | None = None,
                 disk_free: Callable[[Path], int] | None = None, timeout: float = 10.0):
        # deferred: huggingface_hub's API modules (~300 ms), only when the Hub is asked
        from huggingface_hub import HfApi

        self.endpoint, self.token = endpoint, token
        self.api = HfApi(endpoint=endpoint, token=token)
        self.library = library or ModelLibrary()
        self._disk_free = disk_free or (lambda p: shutil.disk_usage(p).free)
        self.timeout = timeout

    # -- looking ----------------------------------------------------------------------------------

    def search(self, query: str, *, format: str = "gguf", limit: int = 20) -> list[HubModel]:
        with hub_errors(query, retry="search again"):
            self._reach()  # huggingface_hub retries a search five times, backing off up to 8 s: 30 s offline
            found = self.api.list_models(search=query, filter=[format], sort="downloads", limit=limit)
            return [HubModel(m.id, m.downloads or 0, m.likes or 0, bool(m.gated), tuple(m.tags or ())) for m in found]

    def _reach(self) -> None:
        """One quick request to the Hub, so being offline is said at once (raises the transport's error)."""
        # deferred: huggingface_hub's API modules (~300 ms), only when the Hub is asked
        from huggingface_hub import constants
        from huggingface_hub.utils import get_session

        get_session().head(f"{self.endpoint or constants.ENDPOINT}/api/models", timeout=self.timeout)

    def listing(self, repo: str) -> RepoListing:
        """The models in `repo` (GGUF files by quant, split parts as one; or the whole MLX repository),
        and each file's size and published sha256."""
        check_repo_id(repo)
        with hub_errors(repo):
            try:
                info = self.api.model_info(repo, files_metadata=True, timeout=self.timeout)
            except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:  # not JSON, or another shape
                raise HubError(f"The Hub's listing of {repo} is malformed ({type(e).__name__}); "
                               "Lantern cannot use it.") from None
        meta, refused = _checked_files(repo, info)
        ggufs = sorted(f for f in meta if f.endswith(".gguf") and not _is_projector_name(f))
        projectors = tuple(sorted(f for f in meta if f.endswith(".gguf") and _is_projector_name(f)))
        groups: dict[str, list[str]] = {}  # the parts of a split share one name
        for f in ggufs:
            groups.setdefault(SPLIT.sub(".gguf", f), []).append(f)
        choices: dict[str, list[str]] = {}
        for base, files in groups.items():
            m = QUANT.search("/" + base)  # the quant may be in a folder name (Q8_0/model-00001-of-00002.gguf)
            label = m.group(1).upper() if m else Path(base).stem
            if label in choices:  # two models of one quant: tell them apart by name
                label = Path(base).stem
            choices[label] = files
        result = [FileChoice(label, tuple(files), sum(meta[f]["size"] for f in files)) for label, files in choices.items()]
        if not ggufs and "config.json" in meta and any(f.endswith(".safetensors") for f in meta):
            result.append(FileChoice("mlx", tuple(sorted(meta)), sum(m["size"] for m in meta.values())))
        commit = info.sha if isinstance(info.sha, str) and re.fullmatch(r"[0-9a-f]{40}", info.sha) else None
        return RepoListing(repo, commit, sorted(result, key=lambda c: c.size_bytes), meta, tuple(refused),
                           projectors if ggufs else ())

    def describe(self, listing: RepoListing, choice: FileChoice):
        """A ModelInfo before any download: a GGUF header read with a ranged request (4 MB, then 32 MB),
        or an MLX repository's config.json. Needed to size the KV cache for the fit check."""
        # deferred: huggingface_hub's API modules (~300 ms), only when the Hub is asked
        from huggingface_hub import hf_hub_url
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        first = choice.files[0]
        url = hf_hub_url(listing.repo, "config.json" if choice.label == "mlx" else first, revision=listing.commit,
                         endpoint=self.endpoint)
        with hub_errors(listing.repo):
            if choice.label == "mlx":
                r = get_session().get(url, headers=build_hf_headers(token=self.token), timeout=self.timeout)
                hf_raise_for_status(r)
                try:
                    return info_from_config(r.json(), path=PurePosixPath(listing.repo), size_bytes=choice.size_bytes)
                except (ValueError, RecursionError):
                    raise HubError(f"The config.json of {listing.repo} is malformed.") from None
            for limit in (4 << 20, 32 << 20):
                headers = {**build_hf_headers(token=self.token), "Range": f"bytes=0-{limit - 1}"}
                r = get_session().get(url, headers=headers, timeout=self.timeout)
                hf_raise_for_status(r)
                try:
                    header = parse_gguf_header(r.content[:limit], total_size=listing.files[first]["size"])
                except HeaderCut:
                    continue
                except ValueError as e:
                    raise HubError(f"{first} is not a readable GGUF file: {e}") from None
                return info_from_header(header, path=PurePosixPath(first), size_bytes=choice.size_bytes)
        raise HubError(f"The GGUF header of {first} is larger than 32 MB; Lantern cannot size it before downloading.")

    # -- pulling ----------------------------------------------------------------------------------

    def pull(self, spec: str, *, name: str | None = None, on_progress: Callable[[DownloadProgress], None] | None = None,
             cancel: threading.Event | None = None) -> LocalModel:
        """Download `REPO[:QUANT|FILE]`, check it, and register it."""
        repo, _, selector = spec.partition(":")
        if name is not None:  # checked before anything is listed, downloaded or moved
            check_model_name(name)
        listing = self.listing(repo)
        meta = listing.files
        choice = _pick(repo, listing.choices, selector)
        name = name or model_name(repo.split("/")[-1] + ("" if choice.label == "mlx" else f"-{choice.label}"))
        try:
            self.library.check_free_name(name)
        except LibraryError as e:
            raise HubError(f"{e} (pull with another --name)") from None
        target = self.library.model_folder(name)
        if target.exists():
            raise HubError(f"{target} already exists and is not a registered model; move it away first.")
        downloads = self.library.root / "downloads"
        downloads.mkdir(parents=True, exist_ok=True)
        staging = downloads / check_name(repo.replace("/", "--"), what="repository id")
        inside(downloads, staging, what="download folder")
        staging.mkdir(exist_ok=True)
        projector = _pick_projector(listing.projectors, meta) if choice.label != "mlx" else None
        wanted = (*choice.files, *([projector] if projector else []))
        total = choice.size_bytes + (meta[projector]["size"] if projector else 0)
        have = sum(p.stat().st_size for f in wanted for p in (staging / f, _partial(staging / f)) if p.is_file())
        split = choice.label != "mlx" and len(choice.files) > 1
        need = total - have + (choice.size_bytes if split else 0)  # joining writes it once more
        free = self._disk_free(staging)
        if need > free:
            raise HubError(f"Not enough disk space for {repo} ({choice.label}): it needs {need / 1e9:.2f} GB more, "
                           f"{free / 1e9:.2f} GB are free in {staging}.")
        tracker = _Tracker(total, on_progress, cancel or threading.Event())
        self.unchecked = []  # files the Hub publishes no hash for (said so by the CLI and the window)
        for f in wanted:
            inside(staging, staging / f, what="file")
            digest = self._download(repo, listing.commit, f, meta[f]["size"], staging, tracker)
            if not verify_download(staging / f, meta[f], digest):
                self.unchecked.append(f)
        model_file = choice.files[0]
        if split:  # one model, one file

            model_file = PART.match(Path(choice.files[0]).name)["stem"] + ".gguf"
            join_split_gguf(staging / choice.files[0], staging / model_file)
            for f in choice.files:
                (staging / f).unlink()
        if projector:  # beside the model file, where app/wiring.py looks for it
            beside = (staging / model_file).parent / Path(projector).name
            if beside != staging / projector:
                (staging / projector).replace(beside)
        staging.replace(target)
        path = target if choice.label == "mlx" else target / model_file
        try:
            return self.library.add(path, name=name, source="pull", repo=repo)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise

    def _download(self, repo: str, commit: str | None, filename: str, size: int, staging: Path,
                  tracker: "_Tracker") -> str | None:
        """huggingface_hub's own downloader into a .partial file that outlives Lantern: the next pull resumes it.

        (hf_hub_download itself deletes its partial file when a download fails, so it cannot resume across runs.)
        """
        # deferred: huggingface_hub's API modules (~300 ms), only when the Hub is asked
        from huggingface_hub import hf_hub_url
        from huggingface_hub.file_download import http_get
        from huggingface_hub.utils import build_hf_headers

        tracker.start_file(filename)
        final = staging / filename
        if final.is_file() and final.stat().st_size == size:
            tracker.file_done = size  # finished by an earlier pull; checked below like the rest
            return None
        partial = _partial(final)
        partial.parent.mkdir(parents=True, exist_ok=True)
        url = hf_hub_url(repo, filename, revision=commit, endpoint=self.endpoint)
        if partial.is_file() and partial.stat().st_size > size:
            partial.unlink()  # longer than the file can be: not a start to resume from
        try:
            with hub_errors(repo), partial.open("a+b") as f:
                out = HashingFile(f, limit=size)  # the sha256 is computed as the bytes arrive
                try:  # huggingface_hub's own size check raises a bare OSError: Lantern checks it below instead
                    http_get(url, out, resume_size=out.tell(), headers=build_hf_headers(token=self.token),
                             expected_size=None, tqdm_class=tracker.tqdm_class())
                finally:
                    digest = out.hexdigest()
        except TooLong:
            partial.unlink(missing_ok=True)
            raise HubError(f"{filename} is larger than the {size} bytes the Hub announced: the download was "
                           "stopped and removed.") from None
        got = partial.stat().st_size
        if got != size:
            partial.unlink(missing_ok=True)
            raise HubError(f"{filename} arrived with {got} bytes, the Hub announced {size}: the partial file was "
                           "removed; pull again.")
        partial.replace(final)
        return digest


class _Tracker:
    """Turns huggingface_hub's tqdm updates into DownloadProgress events, and cancels between blocks."""

    def __init__(self, total: int, report: Callable | None, cancel: threading.Event):
        self.total, self.report, self.cancel = total, report, cancel
        self.done_before = 0  # bytes of the files already finished
        self.file, self.file_done = "", 0
        self.t0, self.start_bytes = time.monotonic(), None

    def start_file(self, name: str) -> None:
        self.done_before += self.file_done
        self.file, self.file_done = name, 0

    def tqdm_class(self):
        tracker = self

        class Progress(tqdm):
            monitor_interval = 0  # no tqdm monitor thread: nothing is drawn

            def __init__(self, *args, **kwargs):
                kwargs["disable"] = True
                super().__init__(*args, **kwargs)
                tracker.file_done = kwargs.get("initial", 0) or 0  # a resumed download starts here
                tracker.emit()

            def update(self, n=1):
                if tracker.cancel.is_set():
                    raise DownloadCancelled("The download was cancelled; pull again to resume it.")
                tracker.file_done += n or 0
                tracker.emit()

        return Progress

    def emit(self) -> None:
        done = self.done_before + self.file_done
        if self.start_bytes is None:
            self.start_bytes, self.t0 = done, time.monotonic()
        elapsed = time.monotonic() - self.t0
        speed = (done - self.start_bytes) / elapsed if elapsed > 0 else 0.0
        if self.report is not None:
            self.report(DownloadProgress(self.file, done, self.total, speed))


def _is_projector_name(name: str) -> bool:
    return "mmproj" in Path(name).name.lower()


def _pick_projector(names: tuple[str, ...], meta: dict) -> str | None:
    """The projector to pull with a model: F16 first (what its makers publish it as), else the smallest."""
    if not names:
        return None
    for quant in ("F16", "BF16", "Q8_0", "F32"):
        for name in names:
            if quant.lower() in Path(name).name.lower():
                return name
    return min(names, key=lambda n: meta[n]["size"])


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def _pick(repo: str, choices: list[FileChoice], selector: str) -> FileChoice:
    if not choices:
        raise HubError(f"{repo} holds no GGUF files and is not an MLX model repository.")
    if not selector:
        for quant in PREFERRED:
            for c in choices:
                if c.label == quant:
                    return c
        return choices[0] if len(choices) == 1 else _ambiguous(repo, choices)
    for c in choices:
        if c.label.upper() == selector.upper() or selector in c.files:
            return c
    raise HubError(f"{repo} has no {selector!r}; choose one of: {', '.join(c.label for c in choices)}.")


def _ambiguous(repo: str, choices: list[FileChoice]) -> FileChoice:
    raise HubError(f"{repo} holds several models; name one: {', '.join(f'{repo}:{c.label}' for c in choices)}.")


def check_repo_id(repo: object) -> str:
    """`owner/name` (or `name`) as the Hub spells repository ids; anything else is refused before any request."""
    if not isinstance(repo, str) or not re.fullmatch(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?", repo) \
            or ".." in repo or "--" in repo or repo.endswith("."):
        raise HubError(f"{ascii(repo)[:100]} is not a Hub repository id (owner/name: letters, digits, '-', '_', '.').")
    return repo


def _checked_files(repo: str, info) -> tuple[dict[str, dict], list[str]]:
    """The listing's files with every field type-checked; names that may not become paths are refused."""
    siblings = info.siblings or []
    if not isinstance(siblings, list):
        raise HubError(f"The Hub's listing of {repo} is malformed (siblings is not a list).")
    meta, refused = {}, []
    for s in siblings:
        name, size = getattr(s, "rfilename", None), getattr(s, "size", None)
        lfs = getattr(s, "lfs", None)
        sha = getattr(lfs, "sha256", None) if lfs is not None else None
        blob = getattr(s, "blob_id", None)
        if not isinstance(name, str) or (size is not None and (type(size) is not int or size < 0)) \
                or (sha is not None and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha))) \
                or (blob is not None and not (isinstance(blob, str) and re.fullmatch(r"[0-9a-f]{40}", blob))):
            raise HubError(f"The Hub's listing of {repo} is malformed (a file entry has fields of the wrong type).")
        try:
            check_relative(name)
        except UnsafeName:
            refused.append(name)
            continue
        if name in meta:
            raise HubError(f"The Hub's listing of {repo} names {ascii(name)} twice.")
        meta[name] = {"size": size or 0, "sha256": sha, "blob_id": blob}
    return meta, refused


