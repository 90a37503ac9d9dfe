"""The Hub's errors, and huggingface_hub's errors as messages a user understands."""
from __future__ import annotations

from pathlib import Path

from basics.errors import LanternError
from files.owned_files import disk_full_error, is_disk_full


class HubError(LanternError):
    pass


class DownloadCancelled(HubError):
    pass


class hub_errors:
    """huggingface_hub's errors as messages a user understands."""

    def __init__(self, what: str, *, retry: str = "try the download again"):
        self.what, self.retry = what, retry

    def __enter__(self):
        return self

    def __exit__(self, kind, e, tb):
        if e is None or isinstance(e, LanternError):
            return False
        # deferred: huggingface_hub's API modules (~300 ms), only when the Hub is asked
        from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError,
                                            LocalEntryNotFoundError, RepositoryNotFoundError)

        if isinstance(e, GatedRepoError):
            raise HubError(f"{self.what} is gated: accept its terms on huggingface.co, then log in with "
                           "`hf auth login` or set HF_TOKEN.") from None
        if isinstance(e, RepositoryNotFoundError):
            raise HubError(f"No repository {self.what!r} on the Hub (or it is private: log in with `hf auth login` "
                           "or set HF_TOKEN).") from None
        if isinstance(e, EntryNotFoundError):
            raise HubError(f"{self.what}: the file is not in the repository.") from None
        if isinstance(e, LocalEntryNotFoundError) or is_network(e):
            raise HubError("The Hugging Face Hub cannot be reached (no network?). Lantern works offline with the "
                           f"models it has; {self.retry} when online.") from None
        if isinstance(e, HfHubHTTPError):
            raise HubError(f"The Hub refused the request for {self.what}: {e}") from None
        if is_disk_full(e):
            full = disk_full_error(Path(getattr(e, "filename", None) or "."))
            raise HubError(f"{full} The download resumes when you pull again.") from None
        return False


def is_network(e: BaseException) -> bool:
    # huggingface_hub may run on httpx or its fork httpx2: match their transport errors by name
    names = {t.__name__ for t in type(e).__mro__}
    return bool(names & {"TransportError", "TimeoutException", "NetworkError"}) or isinstance(
        e, (ConnectionError, TimeoutError))
