"""Worker processes that never outlive their parent.

A parent killed with SIGKILL cannot stop its workers, and a worker blocked on a pipe to a dead
parent waits forever. `die_with_parent(parent_pid)`, called first thing in a worker (a
pool initializer; the parent passes its PID, as the worker may already be an orphan when it
starts), makes the worker end when its parent does:

- on Linux, the kernel sends the worker SIGKILL when the parent exits (prctl
  PR_SET_PDEATHSIG, through ctypes);
- everywhere, a daemon thread checks every `interval` seconds whether the parent changed
  (`os.getppid()`: an orphan is re-parented) and then ends the worker.

Workers hold nothing to clean up (their results travel through the pool), so ending them at
once loses nothing. Imports neither TensorFlow nor dlib.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent_pid: int, interval: float = 1.0) -> None:
    """Ends this process (SIGKILL on Linux, else `os._exit`) as soon as process `parent_pid`,
    which started it, is no longer its parent (at once if that is so already)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid, interval), name="watch-parent", daemon=True).start()


def _watch_parent(parent: int, interval: float) -> None:
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)
