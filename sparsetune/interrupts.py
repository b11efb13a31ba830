"""SIGINT and SIGTERM as one exception, so an interrupted run can record itself before it exits.

Both signals raise `Interrupted` (a KeyboardInterrupt, so library code that lets Ctrl-C through lets it
through too) in the main thread; the run writes `status: interrupted` and the CLI exits 128 + signal
(130 for SIGINT, 143 for SIGTERM) with one line instead of a traceback.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


def signal_of(exc: BaseException) -> int:
    """The signal behind an interruption; a plain KeyboardInterrupt is Ctrl-C."""
    return getattr(exc, "signum", signal.SIGINT)


def exit_code(exc: BaseException) -> int:
    return 128 + signal_of(exc)


def signal_name(exc: BaseException) -> str:
    return signal.Signals(signal_of(exc)).name


def _raise(signum, frame):
    raise Interrupted(signum)


@contextmanager
def as_exceptions():
    """Inside: SIGINT/SIGTERM raise Interrupted. Handlers can only be set from the main thread; elsewhere
    (a run started from a worker thread) the process keeps its handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def deferred():
    """Hold SIGINT/SIGTERM while the final record is written; a signal that came meanwhile fires after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
