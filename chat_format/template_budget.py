"""A Jinja sandbox with a budget: a chat template from a model file may not run for minutes, fill the memory,
or recurse without end (nested range() loops, lipsum(10**7), 'a'*10**9, a macro that calls itself).

Every call, attribute and item access, range() step and filter counts against the budget; `*`, `**` and `+`
are checked before they run; and a watchdog interrupts a render still going past its time (a loop with no
calls at all), so the thread that renders always comes back.
"""
from __future__ import annotations

import ctypes
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range
from jinja2.utils import generate_lorem_ipsum


@dataclass(frozen=True)
class TemplateLimits:
    seconds: float = 1.0
    max_chars: int = 4 << 20  # the rendered prompt, and any string or list made on the way
    max_steps: int = 5_000_000  # calls, attribute and item reads, loop steps
    max_depth: int = 64  # nested calls (a recursive macro)


class OverBudget(Exception):
    """The template went past one of its limits; the message names which."""


class _Interrupted(BaseException):
    """Raised asynchronously in the rendering thread by the watchdog (BaseException: templates cannot catch it)."""


class _Render:
    def __init__(self, limits: TemplateLimits, deadline: float | None = None):
        self.limits = limits
        own = time.monotonic() + limits.seconds
        self.deadline = own if deadline is None else min(own, deadline)
        self.steps = self.depth = self.chars = 0

    def tick(self) -> None:
        self.steps += 1
        if self.steps > self.limits.max_steps:
            raise OverBudget(f"more than {self.limits.max_steps:,} steps")
        if not self.steps & 255 and time.monotonic() > self.deadline:
            raise OverBudget(f"more than {self.limits.seconds:g} s")

    def size(self, n: int, what: str = "a value") -> None:
        if n > self.limits.max_chars:
            raise OverBudget(f"{what} of more than {self.limits.max_chars:,} characters")


class BudgetedSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+"})

    def __init__(self, *args, limits: TemplateLimits = TemplateLimits(), **kwargs):
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._local = threading.local()
        self.globals["range"] = self._range
        self.globals["lipsum"] = self._lipsum
        for name, f in list(self.filters.items()):
            self.filters[name] = self._budgeted_filter(f)

    # -- one render -------------------------------------------------------------------------------

    @property
    def _render(self) -> _Render:
        r = getattr(self._local, "render", None)
        if r is None:  # compile-time constant folding, or a render outside run(): a fresh budget
            r = self._local.render = _Render(self.limits)
        return r

    @contextmanager
    def one_budget(self):
        """Every render inside shares one time budget: the renders of one request (or of the capability probes at
        load) together stop within about `seconds`, not each of them (issue 32: 13 probes of a looping template
        held a load for 16 s)."""
        outer = getattr(self._local, "deadline", None)
        if outer is not None:
            yield  # already inside one: it counts
            return
        self._local.deadline = time.monotonic() + self.limits.seconds
        try:
            yield
        finally:
            self._local.deadline = None

    def run(self, template, **context) -> str:
        """Render `template` within the budget; OverBudget names the limit that was passed."""
        render = self._local.render = _Render(self.limits, getattr(self._local, "deadline", None))
        left = render.deadline - time.monotonic()
        if left <= 0:
            self._local.render = None
            raise OverBudget(f"more than {self.limits.seconds:g} s")
        watchdog = _Watchdog(threading.get_ident(), left + 0.25)
        try:
            try:
                out = []
                for chunk in template.generate(**context):
                    render.chars += len(chunk)
                    render.size(render.chars, "a prompt")
                    render.tick()
                    out.append(chunk)
                return "".join(out)
            finally:
                watchdog.stop()
        except _Interrupted:
            raise OverBudget(f"more than {self.limits.seconds:g} s") from None
        except RecursionError:
            raise OverBudget("recursion deeper than Python allows") from None
        except MemoryError:
            raise OverBudget("more memory than there is") from None
        finally:
            self._local.render = None

    # -- the hooks --------------------------------------------------------------------------------

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (Jinja's own signature)
        r = __self._render
        r.tick()
        _check_args(r, __obj, args, kwargs)
        r.depth += 1
        try:
            if r.depth > __self.limits.max_depth:
                raise OverBudget(f"calls nested deeper than {__self.limits.max_depth}")
            result = super().call(__context, __obj, *args, **kwargs)
        finally:
            r.depth -= 1
        _check_result(r, result)
        return result

    def getattr(self, obj, attribute):
        r = self._render
        r.tick()
        result = super().getattr(obj, attribute)
        _check_result(r, result)  # a value grown by `~` in a namespace is caught when it is read back
        return result

    def getitem(self, obj, argument):
        r = self._render
        r.tick()
        result = super().getitem(obj, argument)
        _check_result(r, result)
        return result

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        r = self._render
        r.tick()
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple, bytes)) and isinstance(n, int):
                    r.size(len(seq) * max(n, 0), "a repeated value")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and \
                    right * max(abs(left).bit_length(), 1) > 4096:
                raise OverBudget("a power too large to compute")
        elif operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            r.size(len(left) + len(right), "a joined value")
        result = super().call_binop(context, operator, left, right)
        _check_result(r, result)
        return result

    def _range(self, *args):
        r = self._render
        for n in args:
            if isinstance(n, int):
                r.size(abs(n), "a range")
        for i in safe_range(*args):
            r.tick()
            yield i

    def _lipsum(self, n: int = 5, html: bool = True, min: int = 20, max: int = 100):
        if not all(isinstance(v, int) for v in (n, min, max)) or n * max * 10 > self.limits.max_chars:
            raise OverBudget("lipsum() asked for too much text")
        return generate_lorem_ipsum(n, html, min, max)

    def budgeted(self, f):
        """`f` as a filter that counts against the budget (for filters added after construction)."""
        return self._budgeted_filter(f)

    def _budgeted_filter(self, f):
        env = self

        def budgeted(*args, **kwargs):
            r = env._render
            r.tick()
            _check_args(r, f, args, kwargs)
            result = f(*args, **kwargs)
            _check_result(r, result)
            return result

        for attr in ("jinja_pass_arg",):  # pass_context / pass_environment markers travel with the filter
            if hasattr(f, attr):
                setattr(budgeted, attr, getattr(f, attr))
        return budgeted


def _check_args(r: _Render, fn, args, kwargs) -> None:
    """Refuse, before it runs, a call whose size arguments ask for more than the budget (center(10**9))."""
    values = [*args, *kwargs.values()]
    for v in values:
        if isinstance(v, int) and not isinstance(v, bool):
            r.size(abs(v), "a width or count")
    name = getattr(fn, "__name__", "")
    s = None
    if name == "replace" and isinstance(getattr(fn, "__self__", None), str) and len(args) >= 2:
        s, old, new = fn.__self__, str(args[0]), str(args[1])  # 'text'.replace(old, new)
    elif name == "do_replace" and len(args) >= 4:
        s, old, new = str(args[1]), str(args[2]), str(args[3])  # text|replace(old, new)
    if s is not None:
        r.size(len(s) + (s.count(old) if old else len(s) + 1) * len(new), "a replaced string")
    if name == "do_format" and values and isinstance(values[0], str) and re.search(r"\d{7}", values[0]):
        raise OverBudget("a format width too large")


def _check_result(r: _Render, result) -> None:
    if isinstance(result, (str, list, tuple, bytes, dict)):
        r.size(len(result))


class _Watchdog:
    """Interrupts the rendering thread if its render runs past `seconds` (a loop that calls nothing)."""

    def __init__(self, thread_id: int, seconds: float):
        self._lock = threading.Lock()
        self._active = True
        self._timer = threading.Timer(seconds, self._fire, args=(thread_id,))
        self._timer.daemon = True
        self._timer.start()

    def _fire(self, thread_id: int) -> None:
        with self._lock:
            if self._active:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(_Interrupted))

    def stop(self) -> None:
        with self._lock:
            self._active = False
        self._timer.cancel()
        if self._timer.is_alive() and self._timer is not threading.current_thread():
            self._timer.join()
