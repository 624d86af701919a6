"""Glue for the workflow's thin scripts: logging to the rule's log, threads, clean errors."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable

from . import logs
from .errors import QuantscanError


def run(main: Callable, smk) -> None:
    """Call ``main(smk, log)``; a ``QuantscanError`` ends the job with its message, not a traceback."""
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
    except Exception:
        log.error("unexpected failure:\n%s", traceback.format_exc())
        raise


def neutral_tests(smk) -> dict:
    """The neutral-only test sets of a compression job, ``{scenario: (x, y)}`` (sweeps): every
    input has the same true class, so errors are false positives; applications without them
    (viral) give none."""
    from .data import load_split

    names = list(getattr(smk.params, "neutral_scenarios", None) or [])
    paths = list(getattr(smk.input, "neutral_tests", None) or [])
    if len(names) != len(paths):
        raise QuantscanError(f"{len(names)} neutral scenarios but {len(paths)} neutral test files")
    return {n: load_split(p) for n, p in zip(names, paths, strict=True)}
