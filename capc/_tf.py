"""Importing TensorFlow without its native start-up lines (CPU features, oneDNN).

TensorFlow's C++ runtime writes those lines to file descriptor 2 before Python's logging or
``TF_CPP_MIN_LOG_LEVEL`` can reach them, so they would open every party's log and ``capc doctor``'s
output. :func:`import_tensorflow` imports it (and Keras) once with descriptor 2 sent to a temporary
file, and shows what was written there only if the import fails.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from types import ModuleType

_lock = threading.Lock()


def import_tensorflow() -> ModuleType:
    """Import and return ``tensorflow`` (also importing ``keras``), quietly on first use."""
    if "tensorflow" in sys.modules and "keras" in sys.modules:
        return sys.modules["tensorflow"]
    with _lock:
        with tempfile.TemporaryFile() as sink:
            sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(sink.fileno(), 2)
            try:
                import keras  # noqa: F401  (Keras 3 loads TensorFlow as its backend)
                import tensorflow as tf
            except BaseException:
                os.dup2(saved, 2)
                sink.seek(0)
                sys.stderr.write(sink.read().decode(errors="replace"))
                raise
            finally:
                os.dup2(saved, 2)
                os.close(saved)
    return tf
