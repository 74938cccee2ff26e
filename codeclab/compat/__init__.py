"""The compatibility wing: what old model files need and the live code no longer has.

A live class or builder holds exactly one architecture, the current one (its paper's, or its
official code's). When a change would alter what an existing model file computes, the workflow is:

1. Copy the part as it was into a class (or builder) here, as a subclass of the live class that
   overrides only what differs, registered under its own name (``<name>_v1``, ...) in the
   registry the live one uses (:mod:`.entropy_models`, :mod:`.transforms`). A config naming it
   rebuilds it, so a loaded old model can be re-exported as it is.
2. Change the live class; its constructor takes no switch back to the old version.
3. Raise the model-file format version (:data:`codeclab.formats.model_header.FORMAT_VERSION`) and
   declare per codec, in :mod:`.model_files`, what a file of the older formats means now: a
   default for an argument added since (:data:`.model_files.DEFAULTS`), or the compat part
   its config stands for (:data:`.model_files.ARCHITECTURES`), nested ``entropy`` and
   ``transform`` specs included.
4. Keep a golden model file and bitstream written by the old version (``tests/golden/``): it
   must decode to the same pixels and re-encode to the same bytes.

:func:`codeclab.formats.model_file.load_model` applies :func:`.model_files.migrate_config` and
:func:`.model_files.migrate_tensors`, which dispatch on the file's ``codec`` and format version
only. Layering: this package may import the entropy models, transforms and codecs; only
:mod:`codeclab.formats` imports it.
"""

from . import entropy_models, transforms  # noqa: F401  (register the compat parts)
from .model_files import migrate_config, migrate_tensors

__all__ = ["migrate_config", "migrate_tensors"]
