"""PDF worker processes: they die with the run, and a crashing one fails only its own invoice.

Worker behaviour is injected through `worker_probes` (text whose escaping
stalls or crashes the worker rendering it). Processes are found through
/proc, so the orphan tests run on Linux only.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

from invoices.render import RenderError, render_many
from test_render import make_doc, pdf_text
from worker_probes import CrashingText

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent

linux_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds processes through /proc")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rpartition(")")[2].split()   # the command name may hold spaces and parentheses
    return fields[0], int(fields[1])


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) and stat[1] == pid:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")   # a zombie has already exited


def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def kill_all(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


RUN_WITH_STALLING_WORKERS = textwrap.dedent("""
    import sys
    from dataclasses import replace
    from pathlib import Path

    from invoices.render import render_many
    from test_render import make_doc
    from worker_probes import StallingText

    if __name__ == "__main__":
        out = Path(sys.argv[1])
        jobs = []
        for n in range(10):
            doc = make_doc(f"INV-2022-{n:04d}")
            first = replace(doc.lines[0], description=StallingText("Research hub monthly fee"))
            jobs.append((replace(doc, lines=(first,) + doc.lines[1:]), out / f"{n}.pdf"))
        render_many(jobs, workers=2)
""")


@linux_only
def test_workers_die_when_the_run_is_killed(tmp_path):
    marks = tmp_path / "busy"
    marks.mkdir()
    script = tmp_path / "run_render.py"
    script.write_text(RUN_WITH_STALLING_WORKERS)
    env = {**os.environ, "MARK_DIR": str(marks),
           "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(REPO), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env)
    children: set[int] = set()
    try:
        # Ready when both workers are inside a job (each marks its pid, then blocks for a minute).
        assert wait_for(lambda: len(list(marks.iterdir())) >= 2, 60), "the workers never started rendering"
        workers = {int(p.name) for p in marks.iterdir()}
        children = children_of(run.pid)
        assert workers <= children and all(alive(pid) for pid in workers)
        run.send_signal(signal.SIGKILL)
        run.wait(10)
        assert wait_for(lambda: not any(alive(pid) for pid in children), 5), \
            f"still running 5 s after their parent was killed: {sorted(p for p in children if alive(p))}"
    finally:
        run.kill()
        kill_all(children)
    assert not list(tmp_path.glob("*.pdf"))


@linux_only
def test_the_fallback_watch_ends_a_process_whose_parent_died(tmp_path):
    """Without PR_SET_PDEATHSIG (not Linux, or prctl unusable) the polling thread alone does it."""
    grandchild = textwrap.dedent("""
        import os, time
        from invoices.render import _watch_parent
        import threading
        threading.Thread(target=_watch_parent, args=(os.getppid(), 0.1), daemon=True).start()
        print("ready", flush=True)
        time.sleep(60)
    """)
    middle = textwrap.dedent(f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", {grandchild!r}], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline() == "ready\\n"
        print(child.pid, flush=True)
        time.sleep(60)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", middle], stdout=subprocess.PIPE, text=True, env=env)
    pid = None
    try:
        pid = int(parent.stdout.readline())
        assert alive(pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert wait_for(lambda: not alive(pid), 5), "the orphan kept running"
    finally:
        parent.kill()
        if pid:
            kill_all([pid])


def test_a_crashing_worker_fails_its_own_invoice_and_the_others_are_rendered(tmp_path):
    numbers = [f"INV-2022-{n:04d}" for n in range(31, 36)]
    jobs = [(make_doc(n), tmp_path / f"{n}.pdf") for n in numbers]
    doc = make_doc("INV-2022-0066")
    crash = replace(doc, lines=(replace(doc.lines[0], description=CrashingText("fee")),) + doc.lines[1:])
    jobs.insert(2, (crash, tmp_path / "crash.pdf"))
    with pytest.raises(RenderError) as info:
        render_many(jobs, workers=2)
    message = str(info.value)
    assert message.startswith("1 of 6 invoice(s) failed to render")
    assert "invoice INV-2022-0066" in message and "died" in message
    for n in numbers:
        assert n in pdf_text(tmp_path / f"{n}.pdf")
    assert not (tmp_path / "crash.pdf").exists()
