"""Evaluation: rate-distortion curves, BD-rate and reports (``python eval.py``).

* :mod:`.metrics` -- RGB PSNR, MS-SSIM (linear and dB), Y-PSNR on 8-bit decoded images.
* :mod:`.bd_rate` -- Bjontegaard delta rate / PSNR, cubic (VCEG-M33) and PCHIP/Akima (JVET).
* :mod:`.curves` -- read CompressAI JSON and two-column text curves; write CompressAI JSON.
* :mod:`.classic` -- JPEG, WebP, JPEG 2000, AVIF, JPEG XL (Pillow) and HEVC-intra (ffmpeg/x265).
* :mod:`.runner` -- images x codecs, per-point disk cache, process pool, progress bar.
* :mod:`.report` -- Markdown, CSV, JSON and PNG plots; optional Weights & Biases logging.
* :mod:`.run` -- builds all of it from the Hydra config (``configs/eval.yaml``).
* :mod:`.bd_rate_cli` -- the ``codeclab bd-rate`` sub-command.

Submodules are imported on use, so ``import codeclab.evaluation`` stays cheap.
"""
