"""Codec registry: the name written in configs, model files and bitstreams finds the class."""

from __future__ import annotations

CODECS: dict[str, type] = {}


def register_codec(cls: type) -> type:
    """Class decorator registering a codec under its ``codec_id``."""
    if cls.codec_id in CODECS:
        raise ValueError(f"codec id {cls.codec_id!r} registered twice")
    CODECS[cls.codec_id] = cls
    return cls


def build_codec(codec_id: str, config: dict):
    """A new codec of the registered class ``codec_id`` built from its constructor ``config``."""
    if codec_id not in CODECS:
        raise KeyError(codec_id)
    return CODECS[codec_id](**config)
