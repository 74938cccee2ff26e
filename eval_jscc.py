"""Evaluate a JSCC model: ``python eval_jscc.py model=PATH [snrs=[0,5,10,15,20]] [source_model=PATH]``.

PSNR over SNR and CBR on a folder of images (Kodak by default) against the separation bound of
the project's own codec and the cliff of a separate scheme. Configuration:
``configs/eval_jscc.yaml``; the protocol is in :mod:`codeclab.evaluation.jscc`.
"""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

from codeclab.errors import one_line_errors  # noqa: E402


@hydra.main(config_path="configs", config_name="eval_jscc", version_base="1.3")
@one_line_errors("eval_jscc.py")
def main(cfg: DictConfig) -> None:
    from codeclab.evaluation.jscc import run_jscc_eval

    run_jscc_eval(cfg)


if __name__ == "__main__":
    main()
