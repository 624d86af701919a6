"""Logging for workflow scripts: progress lines to the rule's log file and to stderr."""

import logging
import sys


def setup(log_path: str | None = None, name: str = "quantscan") -> logging.Logger:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    # msprime logs every simulation model change at INFO: far too chatty for a job log
    logging.getLogger("msprime").setLevel(logging.WARNING)
    return logging.getLogger(name)
