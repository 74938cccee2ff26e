"""The post-filter registry: networks that enhance decoded images (after any decoder)."""

from ..registry import Registry

POSTFILTERS = Registry("post-filter")
