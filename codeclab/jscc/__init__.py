"""Deep joint source-channel coding: images mapped straight to channel symbols (no entropy
coding), registered in :data:`JSCC_MODELS` (:mod:`.swinjscc`)."""

from .swinjscc import JSCC_MODELS, SwinJSCC

__all__ = ["JSCC_MODELS", "SwinJSCC"]
