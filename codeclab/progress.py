"""The one progress bar of long work (video frames, refinement, rate search, tiles, evaluation)."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress_bar(iterable=None, *, total: int | None = None, initial: int = 0, desc: str, unit: str, enabled: bool = True) -> tqdm:
    """A tqdm bar on stderr, shown only when ``enabled`` and stderr is a terminal, so logs, pipes
    and captured output never hold bar text; it disappears when done (the result line follows)."""
    return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True,
                disable=not (enabled and sys.stderr.isatty()))
