"""A bound on how long one piece of training work may run: a user's cell whose forward never returns must not hold a
run past its wall-clock budget, nor past a stop request (SIGINT/SIGTERM), for longer than a grace period.

The trainer checks its budget and a stop request only between steps, so a step that never ends would never see
either. The CLI gives its Trainer a `StepTimer`: each training step and each evaluation runs inside `timer.guard(...)`,
which arms a SIGALRM timer (main thread only) for the budget left plus the grace, or for the grace alone once a stop
was requested; when it fires inside the guarded work, `StepOverrun` is raised there. Saving a checkpoint is never
guarded, so a timer cannot cut a save short (a save is crash-safe anyway, see `smtrnn.checkpoint`).

The grace is max(train.stop_grace, 2 × the longest step so far): a run whose steps are legitimately slow is not cut.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class StepOverrun(BaseException):
    """A guarded step or evaluation ran past its bound. A BaseException, so that no `except Exception` on the way
    (the user's own code included) swallows it."""

    def __init__(self, message: str, stopped_by: str | None):
        super().__init__(message)
        self.stopped_by = stopped_by  # the signal's name when a stop request was not honoured, else None (budget)


class StepTimer:
    """Arms SIGALRM around guarded work; inactive (a no-op) outside the main thread, where handlers cannot be set."""

    def __init__(self, grace: float):
        self.grace = grace
        self.longest = 0.0  # the longest guarded step that ended, in seconds
        self.active = threading.current_thread() is threading.main_thread()
        self.stopped_by: str | None = None  # set by `stop_requested`
        self._what: str | None = None  # the guarded work running now, or None
        self._started = 0.0
        self._budget_left: float | None = None

    def allowance(self) -> float:
        return max(self.grace, 2.0 * self.longest)

    @contextmanager
    def guard(self, what: str, budget_left: float | None = None) -> Iterator[None]:
        """Run the block under a bound: `budget_left` + the allowance when the run has a budget, the allowance alone
        once a stop was requested, no bound otherwise."""
        if not self.active:
            yield
            return
        previous = signal.signal(signal.SIGALRM, self._fire)
        self._what, self._started, self._budget_left = what, time.monotonic(), budget_left
        self._arm()
        try:
            yield
            if what == "step":
                self.longest = max(self.longest, time.monotonic() - self._started)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self._what = None
            signal.signal(signal.SIGALRM, previous)

    def stop_requested(self, signal_name: str) -> None:
        """A stop was asked for (from a signal handler): the work running now gets the allowance to end."""
        self.stopped_by = signal_name
        if self.active and self._what is not None:
            self._arm()

    def _arm(self) -> None:
        if self.stopped_by is not None:
            seconds = self.allowance()
        elif self._budget_left is not None:
            seconds = max(self._budget_left, 0.0) + self.allowance()
        else:
            return
        remaining = signal.getitimer(signal.ITIMER_REAL)[0]
        if not remaining or seconds < remaining:  # a stop request only ever shortens the bound
            signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))

    def _fire(self, signum, frame) -> None:
        if self._what is None:  # the guarded work has just ended
            return
        ran = time.monotonic() - self._started
        if self.stopped_by is not None:
            raise StepOverrun(
                f"{self.stopped_by}: the current {self._what} did not end within {self.allowance():.0f} s "
                f"of the stop request ({ran:.0f} s in it)",
                self.stopped_by,
            )
        raise StepOverrun(
            f"the current {self._what} ran {ran:.0f} s, {self.allowance():.0f} s past the wall-clock "
            "budget (a cell whose forward does not return?)",
            None,
        )
