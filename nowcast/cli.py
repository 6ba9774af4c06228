"""The hydra entry point every script shares, with one-paragraph errors for bad input.

A script defines ``run(cfg)`` (callable from tests and notebooks) and makes its command
line with ``main = hydra_entry(run, "forecast")``. The entry point composes the config
``configs/<config_name>.yaml`` as ``@hydra.main`` does (run directories, overrides,
multirun; the job is named after the script) and calls ``run``. An error that is about
the user's input -- an invalid config value (:class:`ConfigError`), a missing or
unreadable file (``OSError``), and whatever else the script lists -- is printed as
``error: ...`` in one paragraph and the process exits with status 1;
``HYDRA_FULL_ERROR=1`` re-raises it with its traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import hydra
from omegaconf import DictConfig

from nowcast.training.schema import ConfigError

__all__ = ["BAD_INPUT", "hydra_entry", "report_bad_input"]

#: Errors about the user's input in every script: reported without a traceback.
BAD_INPUT: tuple[type[BaseException], ...] = (ConfigError, OSError)

R = TypeVar("R")


def report_bad_input(
    err: BaseException, on_error: Callable[[], None] | None = None
) -> None:
    """Print ``err`` as one ``error: ...`` paragraph and exit with status 1.

    ``on_error`` runs first (e.g. removing a run directory that holds nothing);
    with ``HYDRA_FULL_ERROR=1`` the error is re-raised instead of printed.
    """
    if on_error is not None:
        on_error()
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise err
    message = " ".join(str(err).split("\n"))
    print(
        f"error: {message}\n(set HYDRA_FULL_ERROR=1 for the traceback)",
        file=sys.stderr,
        flush=True,
    )
    sys.exit(1)


def hydra_entry(
    run: Callable[[DictConfig], R],
    config_name: str,
    *,
    config_path: str = "../configs",
    bad_input: tuple[type[BaseException], ...] = (),
    on_error: Callable[[], None] | None = None,
) -> Callable[[], R]:
    """The command-line entry point of a script whose work is ``run(cfg)``.

    Parameters
    ----------
    run : callable
        ``run(cfg: DictConfig)``, defined in the script; its module and file name the
        hydra job and anchor ``config_path``.
    config_name : str
        Primary config (``configs/<config_name>.yaml``).
    config_path : str
        Config folder, relative to the script's file (hydra's convention).
    bad_input : tuple of exception types
        Errors reported in one paragraph besides :data:`BAD_INPUT`.
    on_error : callable, optional
        Called before such an error is reported.

    Returns
    -------
    callable
        ``main()``: parses ``sys.argv`` as hydra overrides and runs.
    """
    caught = BAD_INPUT + tuple(bad_input)

    @hydra.main(version_base="1.3", config_path=config_path, config_name=config_name)
    @functools.wraps(run)  # hydra reads the script's module and file through this
    def main(cfg: DictConfig) -> Any:
        try:
            return run(cfg)
        except caught as err:
            report_bad_input(err, on_error)

    return main
