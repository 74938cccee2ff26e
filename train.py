"""Train a codec: ``python train.py codec=mbt2018_mean lmbda=0.0067 trainer.max_steps=...``.

Configuration lives in ``configs/`` (see ``configs/train.yaml``); the work is in
:mod:`codeclab.training.run`.
"""

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

from codeclab.errors import CodecLabError  # noqa: E402
from codeclab.training.run import train  # noqa: E402


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except CodecLabError as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        sys.exit(1)
    # Returned for Hydra sweepers that optimise a value.
    return metrics.get("val/loss")


if __name__ == "__main__":
    main()
