"""Shared pytest fixtures and settings for the capc test suite."""

from __future__ import annotations

import os

# TensorFlow's start-up chatter hides test output; keep it to errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
