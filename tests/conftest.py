"""Shared pytest fixtures and settings for the capc test suite."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# TensorFlow's start-up chatter hides test output; keep it to errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Models trained on first use go to a cache of this test session's own (inherited by every party
# process the tests start), never into the user's ~/.cache/capc.
_CACHE = tempfile.mkdtemp(prefix="capc-tests-cache-")
os.environ["CAPC_CACHE_DIR"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
