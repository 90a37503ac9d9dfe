"""The errors Lantern reports to a user, at the bottom of the house so that every layer can raise them."""
from __future__ import annotations


class LanternError(Exception):
    """Base of every error Lantern reports to a user: the message is meant to be shown as is."""


class ModelLoadError(LanternError):
    """The model file is missing, unreadable, corrupt, or the load options do not fit it."""


class InvalidRequestError(LanternError):
    """A request the engine cannot run (bad messages, bad sampling values...); `param` names the field."""

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        self.param = param


class ContextFullError(InvalidRequestError):
    """The context's cells are all taken: slots share them, and a reply that grows needs more than the others leave.
    The engine ends the reply there with "length", as at the end of a context of its own."""


class ContextOverflowError(InvalidRequestError):
    """The prompt does not fit the model's context window."""

    def __init__(self, message: str, *, prompt_tokens: int, n_ctx: int):
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx
