"""Evaluate video codecs: ``python eval_video.py [model=PATH] [sequences=[basketballpass]] [intra_periods=[12]]``.

Stages (``stages=[learned,anchors,report]``; results accumulate in ``learned.json`` and
``anchors.json`` of ``output_dir``, so each stage can run on its own, even at the same time):
``learned`` codes the model at ``intra_periods`` and all-intra at ``levels``; ``anchors`` runs
x264/x265 (``video_anchors=``); ``report`` writes ``summary.json``, ``tables.md`` and plots.
Configuration: ``configs/eval_video.yaml``; the protocol is in :mod:`codeclab.evaluation.video`.
"""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

from codeclab.errors import one_line_errors  # noqa: E402


@hydra.main(config_path="configs", config_name="eval_video", version_base="1.3")
@one_line_errors("eval_video.py")
def main(cfg: DictConfig) -> None:
    from codeclab.evaluation.video import run_video_eval

    run_video_eval(cfg)


if __name__ == "__main__":
    main()
