"""atomic_path: no temporary file survives a failed, terminated or killed write."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from quantscan import atomic
from quantscan.atomic import atomic_path, remove_stale_temporaries, temporaries, write_text

#: write ``argv[1]`` through atomic_path and hang inside the block; ``argv[2]``: "run" (through
#: scripting.run, which installs the SIGTERM handler) or "bare" (no handler)
WRITER = textwrap.dedent(
    """
    import sys, time, types
    from quantscan.atomic import atomic_path
    from quantscan.scripting import run

    def main(smk, log):
        with atomic_path(sys.argv[1]) as tmp:
            tmp.write_text("partial")
            print(tmp, flush=True)
            time.sleep(120)

    if sys.argv[2] == "run":
        smk = types.SimpleNamespace(log=[sys.argv[1] + ".log"], rule="writer", threads=1)
        run(main, smk)
    else:
        main(None, None)
    """
)


def start_writer(path, mode):
    """The hanging writer process and the temporary file it is writing."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    tmp = proc.stdout.readline().strip()
    assert tmp, proc.stderr.read()
    assert os.path.exists(tmp) and temporaries(path) == [path.parent / os.path.basename(tmp)]
    return proc, tmp


def test_sigterm_removes_the_temporary_file(tmp_path):
    out = tmp_path / "out.txt"
    proc, tmp = start_writer(out, "run")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert not os.path.exists(tmp) and not out.exists()
    assert temporaries(out) == []
    log = (tmp_path / "out.txt.log").read_text()
    assert "terminated by SIGTERM; its temporary files were removed" in log


def test_without_the_handler_sigterm_leaves_the_file_and_the_next_write_removes_it(tmp_path):
    """The control: the default SIGTERM kills the writer like kill -9, mid-write."""
    out = tmp_path / "out.txt"
    proc, tmp = start_writer(out, "bare")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == -signal.SIGTERM
    assert os.path.exists(tmp) and not out.exists()
    write_text(out, "done")
    assert out.read_text() == "done"
    assert not os.path.exists(tmp) and temporaries(out) == []


def test_kill_9_leftover_is_removed_by_the_next_write(tmp_path):
    out = tmp_path / "model.qsp"
    proc, tmp = start_writer(out, "run")
    proc.kill()
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert os.path.exists(tmp)  # nothing can catch SIGKILL
    with atomic_path(out) as new:
        assert not os.path.exists(tmp)  # cleaned before the new write starts
        new.write_bytes(b"QSPK")
    assert out.read_bytes() == b"QSPK" and temporaries(out) == []


def test_exception_removes_the_temporary_file(tmp_path):
    out = tmp_path / "x.npz"
    with pytest.raises(ZeroDivisionError), atomic_path(out) as tmp:
        tmp.write_text("partial")
        assert tmp.name.startswith(f".x.npz.{atomic._HOST}.{os.getpid()}.")
        assert tmp.name.endswith(".tmp.npz")
        1 / 0  # noqa: B018
    assert list(tmp_path.iterdir()) == []


def test_stale_rules(tmp_path):
    """Dead writers of this host go at once; live ones stay; other hosts' (and old-style names)
    go when last modified before this process started."""
    out = tmp_path / "a.pt"
    sleeper = subprocess.Popen(["sleep", "60"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        host = atomic._HOST
        files = {
            "dead": f".a.pt.{host}.{dead.pid}.abcd1234.tmp.pt",
            "live": f".a.pt.{host}.{sleeper.pid}.abcd1234.tmp.pt",
            "other_new": ".a.pt.elsewhere.1.abcd1234.tmp.pt",
            "other_old": ".a.pt.elsewhere.2.abcd1234.tmp.pt",
            "legacy_old": ".a.pt.x1y2z3_q.tmp.pt",
            "sibling": f".a.pt.json.{host}.{dead.pid}.abcd1234.tmp.json",  # a.pt.json's
            "output_like": "a.pt.tmp",
        }
        for name in files.values():
            (tmp_path / name).write_text("partial")
        past = atomic._STARTED - 3600
        for key in ("other_old", "legacy_old"):
            os.utime(tmp_path / files[key], (past, past))
        removed = remove_stale_temporaries(out)
        assert sorted(p.name for p in removed) == sorted(
            files[k] for k in ("dead", "other_old", "legacy_old")
        )
        left = {p.name for p in tmp_path.iterdir()}
        assert left == {files[k] for k in ("live", "other_new", "sibling", "output_like")}
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_write_does_not_remove_a_live_writers_file(tmp_path):
    out = tmp_path / "out.txt"
    proc, tmp = start_writer(out, "run")
    try:
        write_text(out, "mine")
        assert os.path.exists(tmp) and out.read_text() == "mine"
    finally:
        proc.kill()
        proc.wait()


FORKER = textwrap.dedent(
    """
    import os, signal, sys, time
    from quantscan.scripting import install_sigterm_handler

    install_sigterm_handler()
    pid = os.fork()
    if pid == 0:  # a forked worker: SIGTERM kills it at once, as without the handler
        try:
            time.sleep(60)
        finally:
            print("child finally", flush=True)
        os._exit(0)
    time.sleep(0.5)
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    print("child signal", os.WTERMSIG(status) if os.WIFSIGNALED(status) else None, flush=True)
    """
)


def test_forked_children_keep_the_default_sigterm():
    done = subprocess.run(
        [sys.executable, "-c", FORKER], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"child signal {int(signal.SIGTERM)}"]
