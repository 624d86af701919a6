"""Write files so a failed job never leaves a half-written output: write a temporary sibling, then rename.

The temporary file is ``.<name>.<host>.<pid>.<random>.tmp<suffix>`` beside the output. It is removed
when the block raises, ``SystemExit`` included (``scripting.run`` turns SIGTERM, which Snakemake and
SLURM send to cancelled jobs, into one). A ``kill -9`` cannot be caught, so every write first removes
the stale temporary files of the same output: those of a process of this host that is no longer
running, and any other (another host's, or one named before this scheme) last modified before this
process started. A live writer of the same output on this host keeps its file.
"""

import contextlib
import os
import re
import socket
import tempfile
import time
from pathlib import Path

#: when this process started (close enough: when it imported this module)
_STARTED = time.time()


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0])[:40] or "host"


_HOST = _host()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    ``suffix`` keeps the extension for writers that infer the format from it (``np.savez``, matplotlib).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if suffix is None else suffix
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{_HOST}.{os.getpid()}.", suffix=f".tmp{suffix}", dir=path.parent
    )
    try:
        os.close(fd)
        # mkstemp makes 0600 files; outputs get the usual permissions
        os.chmod(tmp, 0o666 & ~_umask())
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def temporaries(path: str | os.PathLike) -> list[Path]:
    """The temporary files of ``atomic_path`` writes of ``path`` that are lying beside it."""
    path = Path(path)
    pattern = re.compile(re.escape(f".{path.name}.") + r"(?:" + _OURS + "|" + _OLD + r")\.tmp")
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return []
    return [path.parent / n for n in names if pattern.match(n)]


#: ``<host>.<pid>.<8 random>`` (this module) or ``<8 random>`` (mkstemp names before it)
_OURS = r"(?P<host>[A-Za-z0-9-]+)\.(?P<pid>[0-9]+)\.[a-z0-9_]{8}"
_OLD = r"[a-z0-9_]{8}"


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed writes of ``path`` left (see the module docstring);
    returns those removed."""
    path = Path(path)
    ours = re.compile(re.escape(f".{path.name}.") + _OURS + r"\.tmp")
    removed = []
    for tmp in temporaries(path):
        match = ours.match(tmp.name)
        try:
            if match and match["host"] == _HOST:
                stale = not _running(int(match["pid"]))
            else:
                stale = tmp.stat().st_mtime < _STARTED
            if stale:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:  # another writer cleaned it first
            continue
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except OverflowError:
        return False
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
