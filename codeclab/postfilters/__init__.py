"""Post-filters: enhancement networks applied to decoded images, registered in :data:`POSTFILTERS`
(:mod:`.rbqe`: RBQE, early-exit blind quality enhancement); their files are
:mod:`codeclab.formats.network_file` (``load_postfilter``)."""

from .base import POSTFILTERS
from .rbqe import RBQE, Enhanced

__all__ = ["POSTFILTERS", "RBQE", "Enhanced"]
