"""Train a codec: ``python train.py codec=mbt2018_mean lmbda=0.0067 trainer.max_steps=...``.

Configuration lives in ``configs/`` (see ``configs/train.yaml``); the work is in
:mod:`codeclab.training.run`.
"""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

from codeclab.errors import one_line_errors  # noqa: E402
from codeclab.training.run import train  # noqa: E402


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
@one_line_errors("train.py")
def main(cfg: DictConfig) -> float | None:
    # Returned for Hydra sweepers that optimise a value.
    return train(cfg).get("val/loss")


if __name__ == "__main__":
    main()
