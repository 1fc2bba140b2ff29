"""SIGINT/SIGTERM during training: a clean stop after the current step (the trainer saves a
checkpoint), and the previous handlers put back afterwards."""
from __future__ import annotations

import signal
import threading


def install(trainer) -> dict:
    """Catch SIGINT/SIGTERM for a clean stop; returns ``{signal: previous handler}`` to restore.

    A signal that is ignored (``SIG_IGN``, e.g. SIGINT of a command started with ``&`` from a
    script, which the shell makes immune to Ctrl-C) stays ignored, and one whose handler was
    not installed from Python (``getsignal`` is None, so it could not be restored) is left as it is.
    """
    trainer._signals_received = []
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum, frame):
        if trainer._stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now (files are written atomically)
        trainer._signals_received.append(signum)
        trainer._stop_signal = signal.Signals(signum).name

    handlers = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        current = signal.getsignal(sig)
        if current is None or current == signal.SIG_IGN:
            continue
        handlers[sig] = signal.signal(sig, handler)
    return handlers


def restore(trainer, handlers: dict) -> None:
    """Put back the handlers :func:`install` replaced, with both signals blocked, so one arriving half way
    waits and then reaches the handler it was meant for; a signal this trainer received but had no
    step left to act on (e.g. during the final save) is passed on to it too."""
    blocked = hasattr(signal, "pthread_sigmask") and bool(handlers)
    if blocked:
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, set(handlers))
    try:
        for sig, old in handlers.items():
            signal.signal(sig, old)
        unhandled = [] if trainer._stop_agreed else trainer._signals_received
        trainer._signals_received = []
        for signum in dict.fromkeys(unhandled):  # once each
            if callable(handlers.get(signum)) or handlers.get(signum) == signal.SIG_DFL:
                signal.raise_signal(signum)  # pending until unblocked below
    finally:
        if blocked:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
