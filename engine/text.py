"""Turning token bytes into safe text deltas: whole UTF-8 characters only, stop strings never shown."""
from __future__ import annotations

import codecs
from typing import Sequence


class TextStream:
    """Feeds token bytes in, gives text out.

    Text that could still be the start of a stop string is held back until it is known
    not to be one, so a stop string split across tokens is caught and never shown.
    """

    def __init__(self, stop: Sequence[str] = (), *, ends: Sequence[str] = ()):
        """`stop`: the client's stop strings; `ends`: strings that end the text as well without being reported as
        a stop string (a base model's next turn marker)."""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = [s for s in (*stop, *ends) if s]
        self._reported = {s for s in stop if s}
        self._held = ""  # decoded text not yet released
        self.stopped = False
        self.matched: str | None = None  # the stop string that ended the text (Anthropic's stop_sequence)

    def push(self, data: bytes) -> str:
        """Add one token's bytes; return the text that is now safe to show."""
        if self.stopped:
            return ""
        self._held += self._decoder.decode(data)
        return self._release(final=False)

    def finish(self) -> str:
        """End of generation: flush what is held (an unfinished character becomes U+FFFD)."""
        if self.stopped:
            return ""
        self._held += self._decoder.decode(b"", final=True)
        return self._release(final=True)

    def _release(self, *, final: bool) -> str:
        text = self._held
        if not self._stop:
            self._held = ""
            return text
        cut = _first_stop(text, self._stop)
        if cut is not None:
            self.stopped = True
            self._held = ""
            matched = next(s for s in self._stop if text.find(s) == cut)
            self.matched = matched if matched in self._reported else None
            return text[:cut]
        keep = 0 if final else _partial_stop_len(text, self._stop)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    positions = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(positions) if positions else None


def _partial_stop_len(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of `text` that is a proper prefix of some stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best
