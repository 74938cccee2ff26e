"""Evaluate codecs: ``python eval.py [data=kodak] [model=PATH | models=[P1,P2]] [classic=kodak]``.

Measures learned models and classic codecs (real bytes, decoded 8-bit images) on a folder of
images, compares them with published anchors (BD-rate) and writes a report into the Hydra run
directory. Configuration: ``configs/eval.yaml``; the work is in :mod:`codeclab.evaluation.run`.
"""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

from codeclab.errors import one_line_errors  # noqa: E402
from codeclab.evaluation.run import run_eval  # noqa: E402


@hydra.main(config_path="configs", config_name="eval", version_base="1.3")
@one_line_errors("eval.py")
def main(cfg: DictConfig) -> None:
    run_eval(cfg)


if __name__ == "__main__":
    main()
