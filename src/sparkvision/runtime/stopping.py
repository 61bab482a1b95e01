"""Stopping a run on SIGTERM or SIGHUP as Ctrl-C does, even where Python swallows the signal.

``kill PID``, a closed terminal or a scheduler's time limit should stop a run the way Ctrl-C
does: temporaries removed, nothing half-written kept, exit status 128 + the signal. The
handler raises :class:`Stopped` in the main thread, wherever it happens to be. When that is a
finaliser (py4j's weakref callback that releases a collected Java reference, or a connection's
``__del__``, both run on the main thread), Python prints "Exception ignored" and carries on, and
the run would finish as if it had never been asked to stop. So the handler also records the signal, and
:func:`raise_if_stopped`, called at every phase boundary and before any output is renamed into
place, raises it again.
"""

from __future__ import annotations

import signal
import sys
import threading

_requested: int | None = None  # the signal received, once one has been


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so every cleanup on the way out runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def request_stop(signum: int, frame=None) -> None:
    """The signal handler: remember the signal, then raise :class:`Stopped` right here."""
    global _requested
    _requested = signum
    raise Stopped(signum)


def raise_if_stopped() -> None:
    """Raise :class:`Stopped` if a stop signal came earlier, even if its first raise was swallowed."""
    if _requested is not None:
        raise Stopped(_requested)


class _QuietAboutStops:
    """``sys.unraisablehook``: a :class:`Stopped` swallowed in a finaliser prints no traceback (the run
    raises it again at its next boundary, with its own one-line message); anything else goes to the
    hook installed before."""

    def __init__(self, previous) -> None:
        self.previous = previous

    def __call__(self, unraisable) -> None:
        if not isinstance(unraisable.exc_value, Stopped):
            self.previous(unraisable)


def handle_stop_signals() -> None:
    """Route SIGTERM and SIGHUP to :func:`request_stop` (by default Python would just die).
    Only the command line calls this: tests calling ``main()`` in-process keep their own handlers."""
    global _requested
    _requested = None
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, request_stop)
        if not isinstance(sys.unraisablehook, _QuietAboutStops):
            sys.unraisablehook = _QuietAboutStops(sys.unraisablehook)
