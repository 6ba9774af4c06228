"""Preemption: stop cleanly on SIGTERM / SIGUSR1 and let a requeued job continue.

Schedulers warn a job before they take its machine away: SLURM sends SIGTERM (or,
with ``--signal=USR1@120``, SIGUSR1 two minutes ahead), Kubernetes and the cloud
spot-instance agents SIGTERM. While :func:`nowcast.training.train` runs,
:class:`StopRequest` catches these signals; the loop finishes the optimiser step in
progress, writes ``checkpoints/last.pt`` atomically, logs the step and epoch where it
stopped and raises :class:`TrainingPreempted`. ``scripts/train.py`` turns that into
the exit status :data:`EXIT_PREEMPTED` (75, ``EX_TEMPFAIL`` of ``sysexits.h``: "try
again later"), so a job script can requeue on it; the rerun with
``trainer.resume=auto`` (or ``true``) continues bit-identically.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = [
    "EXIT_PREEMPTED",
    "PREEMPTION_SIGNALS",
    "StopRequest",
    "TrainingPreempted",
]

log = logging.getLogger("nowcast.training")

#: Exit status of ``scripts/train.py`` after a preemption (EX_TEMPFAIL, sysexits.h).
EXIT_PREEMPTED = 75

#: The signals that ask a training to stop at the next step boundary.
PREEMPTION_SIGNALS: tuple[signal.Signals, ...] = tuple(
    s for s in (signal.SIGTERM, getattr(signal, "SIGUSR1", None)) if s is not None
)


class TrainingPreempted(Exception):
    """A preemption signal stopped the training after a completed step.

    Attributes
    ----------
    signal_name : str
        ``"SIGTERM"`` or ``"SIGUSR1"``.
    step, epoch : int
        Optimiser steps taken and the epoch it stopped in.
    checkpoint : pathlib.Path
        The ``last.pt`` that holds the state (resume with ``trainer.resume=auto``).
    """

    def __init__(self, signal_name: str, step: int, epoch: int, checkpoint: Path):
        self.signal_name, self.step, self.epoch = signal_name, step, epoch
        self.checkpoint = Path(checkpoint)
        super().__init__(
            f"{signal_name} received: training stopped after step {step} (epoch "
            f"{epoch}); its state is in {self.checkpoint}. Run the same command with "
            "trainer.resume=auto (or trainer.resume=true) to continue exactly there"
        )


class StopRequest:
    """Context manager: while active, :data:`PREEMPTION_SIGNALS` only set a flag.

    The previous handlers come back on exit. Outside the main thread (where Python
    cannot install signal handlers) it does nothing and :attr:`signal_name` stays
    None.

    Attributes
    ----------
    signal_name : str or None
        The first preemption signal received, None before any.
    """

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.signal_name is None:
            log.warning("%s received: stopping after the current step", name)
            self.signal_name = name

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in PREEMPTION_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
