"""Text that misbehaves when a render worker prints it, to test worker processes from outside.

Jinja escapes a value through its `__html__` method, so putting one of these
in an invoice line's description runs the code below inside the process that
renders that invoice. They live in a module of their own so that "spawn"
workers (which import by name) can unpickle them.
"""
from __future__ import annotations

import os
import time
from pathlib import Path


class StallingText(str):
    """Touches MARK_DIR/<worker pid>, then blocks for a minute: the worker stays busy."""

    def __html__(self) -> str:
        Path(os.environ["MARK_DIR"], str(os.getpid())).touch()
        time.sleep(60)
        return str(self)


class CrashingText(str):
    """Ends the worker process on the spot, as a segfault in a native library would."""

    def __html__(self) -> str:
        os._exit(3)
