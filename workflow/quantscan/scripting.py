"""Glue for the workflow's thin scripts: logging to the rule's log, threads, clean errors, and
SIGTERM turned into an exception so that context managers (``atomic.atomic_path``'s temporary
files) clean up when Snakemake or SLURM cancels a job."""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Callable

from . import logs
from .errors import QuantscanError


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM: ``finally`` blocks and context managers run, and the
    process exits with status 128 + 15 as it would have without the handler."""


def install_sigterm_handler() -> None:
    """Make SIGTERM raise ``Terminated`` in this process (the main thread). Children forked later
    (multiprocessing workers) keep the default behaviour: they die at once."""
    owner = os.getpid()

    def handler(signum, frame):
        if os.getpid() != owner:  # a forked child: terminate as if no handler were installed
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Terminated(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def run(main: Callable, smk) -> None:
    """Call ``main(smk, log)``; a ``QuantscanError`` ends the job with its message, not a traceback,
    and SIGTERM ends it through ``Terminated`` after temporary files are removed."""
    install_sigterm_handler()
    log = logs.setup(smk.log[0] if len(smk.log) else None, name=f"quantscan.{smk.rule}")
    try:
        import torch

        torch.set_num_threads(max(1, int(smk.threads)))
    except ImportError:  # pragma: no cover - every step env has torch, but keep scripts usable
        pass
    try:
        main(smk, log)
    except QuantscanError as err:
        log.error("%s", err)
        sys.exit(1)
    except Terminated:
        log.error("terminated by SIGTERM; its temporary files were removed")
        raise
    except Exception:
        log.error("unexpected failure:\n%s", traceback.format_exc())
        raise


def extra_tests(smk) -> dict:
    """A job's extra test sets, ``{name: (x, y)}``: test sets whose inputs all have one true
    class (``params.extra_test_names`` and ``input.extra_tests``; App.extra_tests), so every
    error is a false call; none when the application has none."""
    from .data import load_split

    names = list(getattr(smk.params, "extra_test_names", None) or [])
    paths = list(getattr(smk.input, "extra_tests", None) or [])
    if len(names) != len(paths):
        raise QuantscanError(f"{len(names)} extra test set names but {len(paths)} files")
    return {n: load_split(p) for n, p in zip(names, paths, strict=True)}
