"""Worker processes that do not outlive their parent.

The batch engine and the querying party's encryption run SEAL in ``spawn`` worker processes. If the
party process dies abruptly (killed, ``os._exit``), a worker blocked on its task queue would never see
end-of-file, because the queue's write end is also held by the other workers: it would stay behind as
an orphan holding a gigabyte of buffers.  :func:`exit_with_parent`, called from a worker's
initializer, waits on the parent's process sentinel in a daemon thread and ends the worker as soon as
the parent is gone.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from multiprocessing.connection import wait


def exit_with_parent() -> None:
    """In a ``multiprocessing`` child: exit immediately when the parent process exits."""
    parent = multiprocessing.parent_process()
    if parent is None:  # not a multiprocessing child (e.g. called in-process by a test)
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(0)

    threading.Thread(target=watch, name="capc-exit-with-parent", daemon=True).start()
