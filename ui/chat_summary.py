"""Start a new chat from a summary of this one: the model writes the summary (on its own thread, never the GUI's),
and the new chat carries it in its own system prompt, where the user can read and change it (Chat settings)."""
from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from engine.events import Finished, GenerationRequest, TextDelta
from engine.sampling import SamplingParams
from ui.tasks import run_task

SUMMARY_TOKENS = 400
ASK = ("Summarize our conversation so far for a fresh start: the facts, decisions, open questions and anything I "
       "asked you to remember, as short bullet points. Write only the summary.")
LEAD = "What we discussed in an earlier chat, summarized:"


def summary_prompt(base_prompt: str, summary: str) -> str:
    """The new chat's system prompt: the one it would have had, then the summary."""
    return "\n\n".join(p for p in (base_prompt.strip(), f"{LEAD}\n{summary.strip()}") if p)


class ChatSummarizer(QObject):
    sig_summarized = Signal(str, int)  # the summary, and how many of the oldest messages did not fit to be read
    sig_failed = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.busy = False

    def summarize(self, worker, history: list[dict]) -> None:
        if self.busy or worker is None or not history:
            return
        self.busy = True
        request = GenerationRequest(messages=[*history, {"role": "user", "content": ASK}],
                                    sampling=SamplingParams(temperature=0), max_tokens=SUMMARY_TOKENS,
                                    drop_oldest_turns=True)  # a chat past its context is summarized from its end

        def write() -> tuple[str, int]:
            parts, dropped = [], 0
            for event in worker.submit(request):
                if isinstance(event, TextDelta):
                    parts.append(event.text)
                elif isinstance(event, Finished):
                    if event.reason == "error":
                        raise RuntimeError(event.error or "the model stopped")
                    dropped = event.stats.dropped_messages
            return "".join(parts).strip(), dropped

        run_task(write, self._done, self._failed)

    def _done(self, result: tuple[str, int]) -> None:
        self.busy = False
        text, dropped = result
        if text:
            self.sig_summarized.emit(text, dropped)
        else:
            self.sig_failed.emit("The model wrote an empty summary.")

    def _failed(self, error: BaseException) -> None:
        self.busy = False
        self.sig_failed.emit(str(error))
