"""SIGTERM and SIGHUP stop a run the way Ctrl-C (SIGINT) does.

Inside :func:`interrupt_on_signals` each of these signals raises a :class:`KeyboardInterrupt` in
the main thread (:class:`Interrupted` for SIGTERM and SIGHUP), so the same code paths handle all
three: the runner stops its workers, ``run.json`` says ``"interrupted"``, partial writes are
removed as the stack unwinds, and the command exits with ``128 + signal number``.  Only the first
signal is acted on; later ones are ignored while the run cleans up (which is bounded: workers
that do not stop within a few seconds are killed).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

#: the signals that stop a run; SIGHUP is missing on Windows
STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class Interrupted(KeyboardInterrupt):
    """A stop signal other than SIGINT (SIGTERM, SIGHUP), raised where the program was."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def signal_of(exc: KeyboardInterrupt) -> signal.Signals:
    """The signal behind an interrupt: SIGINT for a plain :class:`KeyboardInterrupt`."""
    return signal.Signals(getattr(exc, "signum", signal.SIGINT))


def exit_status(exc: KeyboardInterrupt) -> int:
    """The shell's convention for a program stopped by a signal: 128 + its number."""
    return 128 + int(signal_of(exc))


@contextlib.contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """Within the block, SIGINT, SIGTERM and SIGHUP raise an interrupt once; the handlers before are restored after.

    A signal that is ignored when the block starts (SIGHUP under ``nohup``) stays ignored.  Outside
    the main thread (where Python cannot install handlers) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal fired
        if fired:
            return  # the run is already stopping; let it clean up
        fired = True
        raise KeyboardInterrupt if signum == signal.SIGINT else Interrupted(signum)

    # a signal ignored on purpose stays ignored: SIGHUP under nohup, SIGINT of a background job
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS if signal.getsignal(sig) != signal.SIG_IGN}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
