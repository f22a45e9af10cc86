"""Command-line argument types shared by the learning scripts (``scripts/train_models.py``,
``scripts/reproduce_learning.py``)."""

from __future__ import annotations

import argparse


def int_list(text: str) -> list[int]:
    """``"1,2,5"`` -> ``[1, 2, 5]``; anything else is an argparse error naming the value."""
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
