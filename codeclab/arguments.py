"""argparse types shared by the command lines: a number that is finite and in range, so that
``nan`` or ``inf`` never reach the code as a setting (argparse reports the bad value in one line)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def number(low: float | None = None, high: float | None = None, positive: bool = False) -> Callable[[str], float]:
    """An argparse ``type``: a finite float in ``[low, high]`` (either bound optional), ``> 0`` if ``positive``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
        if (low is not None and value < low) or (high is not None and value > high) or (positive and value <= 0):
            bounds = "> 0" if positive else f"in [{low}, {high}]"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {text!r}")
        return value

    return parse
