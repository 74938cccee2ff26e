"""The compatibility wing: the first versions of parts that moved to their paper's code, and what
a model file of each older format means now. A live class holds one architecture; to change one
in a way that alters what existing model files compute:

1. Keep the part as it was here: a subclass of the live class overriding only what differs,
   registered as ``<name>_v1`` in the live class's registry (:mod:`.entropy_models`,
   :mod:`.transforms`), so a config naming it rebuilds it and a loaded old model re-exports as it is.
2. Change the live class, with no switch back; raise the model-file format version.
3. Declare per codec in :mod:`.model_files` what files of the older formats mean now, and add a
   golden model file and bitstream written by the old version to ``tests/golden/``.

:func:`codeclab.formats.model_file.load_model` dispatches on the file's codec and format version
only. Layering: this package may import entropy models, transforms and codecs; only
:mod:`codeclab.formats` imports it.
"""

from . import entropy_models, transforms  # noqa: F401  (register the compat parts)
from .model_files import migrate_config, migrate_tensors

__all__ = ["migrate_config", "migrate_tensors"]
