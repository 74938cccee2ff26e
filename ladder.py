"""Build a VQGAN variable-rate ladder: ``python ladder.py model=PATH images=DIR [sizes=[1024,256,64,16]]``.

Configuration: ``configs/ladder.yaml``; the work is in :mod:`codeclab.training.vqgan_ladder`.
"""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

from codeclab.errors import one_line_errors  # noqa: E402


@hydra.main(config_path="configs", config_name="ladder", version_base="1.3")
@one_line_errors("ladder.py")
def main(cfg: DictConfig) -> None:
    from codeclab.training.vqgan_ladder import run_ladder

    run_ladder(cfg)


if __name__ == "__main__":
    main()
