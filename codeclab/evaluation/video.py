"""Video evaluation: learned codecs (real files) and live x264/x265 anchors on the same YUV data.

Protocol (every frame of each sequence, no cropping):

* **Source.** PNG sequences are RGB; their 4:2:0 version (BT.601, limited range,
  :mod:`codeclab.data.colour`) is what x264/x265 code. Y4M sequences are 4:2:0; their RGB
  version (same matrix) is what the learned codec codes.
* **Rate.** Bits per pixel from the real file bytes (headers included), averaged over frames;
  the I- and P-frame shares are reported separately.
* **Distortion.** Per frame, then averaged over frames: RGB PSNR (against the source RGB),
  YUV PSNR with 6:1:1 weighting (against the source 4:2:0 planes, after converting a learned
  codec's RGB output to 4:2:0 with the same matrix) and RGB MS-SSIM. An x264/x265 output is
  converted to RGB by the project with the same matrix, never by ffmpeg.
* **Anchors.** x264 and x265 (``configs/video_anchors/``) through ffmpeg (:mod:`codeclab.ffmpeg`:
  a system ffmpeg, else imageio-ffmpeg's), constant QP, no B-frames, ``-tune zerolatency``, the
  same intra period as the learned codec (``-1``: one I-frame, scene cut off), one thread.

:func:`run_video_eval` runs the stages of ``eval_video.py`` (``configs/eval_video.yaml``).
"""

from __future__ import annotations

import json
import math
import subprocess
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from ..data.colour import rgb_to_yuv420, yuv420_to_rgb
from ..data.video import Clip, frame_size_420, read_video, read_y4m_planes, split_planes, y4m_bytes, y4m_clip
from ..ffmpeg import ffmpeg_executable
from ..formats.file_coding import to_uint8
from ..formats.video_file import encode_video, frame_types
from .metrics import ms_ssim_rgb, psnr_rgb
from ..measures import bits_per_pixel, psnr

MATRIX, RANGE = "bt601", "limited"


@dataclass
class Sequence:
    name: str
    clip: Clip  # RGB frames the learned codec codes
    yuv: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # 4:2:0 planes x264/x265 code


def load_sequence(path: Path, max_frames: int | None = None) -> Sequence:
    """A test sequence; Y4M keeps its own samples as the 4:2:0 reference."""
    path = Path(path)
    if path.suffix.lower() == ".y4m":
        info, yuv = read_y4m_planes(path, max_frames)
        clip = y4m_clip(info, yuv, MATRIX)
    else:
        clip = read_video(path, MATRIX, max_frames)
        yuv = [rgb_to_yuv420(frame, MATRIX, RANGE) for frame in clip.frames]
        clip.matrix, clip.colour_range = MATRIX, RANGE
    return Sequence(path.stem if path.suffix else path.name, clip, yuv)


def yuv_psnr(reference: tuple[np.ndarray, ...], decoded: tuple[np.ndarray, ...]) -> dict[str, float]:
    """PSNR of Y, U, V and their 6:1:1 weighted mean (the weighting of JVET/DCVC reports)."""
    values = [psnr(float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)), 255.0)
              for a, b in zip(reference, decoded)]
    return {"psnr-y": values[0], "psnr-u": values[1], "psnr-v": values[2], "psnr-yuv": (6 * values[0] + values[1] + values[2]) / 8}


def frame_metrics(sequence: Sequence, index: int, rgb: np.ndarray, yuv: tuple[np.ndarray, ...]) -> dict[str, float]:
    """Every metric of one decoded frame, given both its RGB and 4:2:0 forms."""
    source = sequence.clip.frames[index]
    return {"psnr-rgb": psnr_rgb(source, rgb), "ms-ssim-rgb": ms_ssim_rgb(source, rgb), **yuv_psnr(sequence.yuv[index], yuv)}


def summarise(sequence: Sequence, kinds: list[str], frame_bytes: list[int], total_bytes: int, metrics: list[dict]) -> dict:
    """One RD point: mean metrics, bpp from the file's bytes, and the I/P split."""
    frames = len(kinds)
    point = {k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]}
    point["bpp"] = bits_per_pixel(total_bytes, sequence.clip.height, sequence.clip.width) / frames
    for kind in ("I", "P"):
        sizes = [b for b, k in zip(frame_bytes, kinds) if k == kind]
        point[f"bpp_{kind}"] = bits_per_pixel(sum(sizes), sequence.clip.height, sequence.clip.width) / len(sizes) if sizes else None
        point[f"frames_{kind}"] = len(sizes)
    return point


@torch.no_grad()
def learned_point(codec, sequence: Sequence, intra_period: int, level: int | None, analysed: list[torch.Tensor],
                  adaptive_intra: bool = False) -> dict:
    """Code the sequence with a CodecLab model (real file bytes) and measure the decoder's frames."""
    encoded = encode_video(codec, sequence.clip, intra_period, level, analysed=analysed, keep_latents=True,
                           adaptive_intra=adaptive_intra)
    metrics = []
    for index, latent in enumerate(encoded.latents):
        rgb = to_uint8(codec.synthesis(latent))[: sequence.clip.height, : sequence.clip.width]
        metrics.append(frame_metrics(sequence, index, rgb, rgb_to_yuv420(rgb, MATRIX, RANGE)))
    point = summarise(sequence, encoded.kinds, encoded.frame_bytes, len(encoded.data), metrics)
    point["level"] = level
    return point


def anchor_command(encoder: str, preset: str, qp: int, intra_period: int, source: Path, output: Path) -> list[str]:
    """The ffmpeg command of one x264/x265 anchor point (constant QP, P-frames only, one thread)."""
    keyint = intra_period if intra_period > 0 else 100000
    common = [ffmpeg_executable(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(source), "-threads", "1"]
    if encoder == "x264":
        codec = ["-c:v", "libx264", "-preset", preset, "-tune", "zerolatency", "-qp", str(qp), "-g", str(keyint),
                 "-keyint_min", str(keyint), "-sc_threshold", "0", "-bf", "0", "-f", "h264"]
    elif encoder == "x265":
        params = f"qp={qp}:keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=0:frame-threads=1:pools=1:info=0:log-level=error"
        codec = ["-c:v", "libx265", "-preset", preset, "-tune", "zerolatency", "-x265-params", params, "-f", "hevc"]
    else:
        raise ValueError(f"encoder must be x264 or x265, got {encoder!r}")
    return common + codec + [str(output)]


def anchor_point(sequence: Sequence, encoder: str, preset: str, qp: int, intra_period: int) -> dict:
    """Code the sequence's 4:2:0 frames with x264/x265 and measure the decoded frames."""
    with tempfile.TemporaryDirectory() as folder:
        source, stream, decoded = Path(folder) / "source.y4m", Path(folder) / "stream.bin", Path(folder) / "decoded.yuv"
        source.write_bytes(y4m_bytes(sequence.yuv, sequence.clip.fps or Fraction(25), RANGE))
        started = time.perf_counter()
        subprocess.run(anchor_command(encoder, preset, qp, intra_period, source, stream), check=True, capture_output=True)
        seconds = time.perf_counter() - started
        subprocess.run([ffmpeg_executable(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(stream), "-f", "rawvideo",
                        "-pix_fmt", "yuv420p", str(decoded)], check=True, capture_output=True)
        raw, total_bytes = np.fromfile(decoded, np.uint8), stream.stat().st_size
    h, w = sequence.clip.height, sequence.clip.width
    frame_size = frame_size_420(h, w)
    if raw.size != frame_size * len(sequence.yuv):
        raise RuntimeError(f"{encoder} decoded {raw.size / frame_size} frames of {len(sequence.yuv)}")
    metrics = []
    for index in range(len(sequence.yuv)):
        yuv = split_planes(raw[index * frame_size : (index + 1) * frame_size], h, w)
        metrics.append(frame_metrics(sequence, index, yuv420_to_rgb(*yuv, MATRIX, RANGE), yuv))
    # The elementary stream has no frame index; only the total is known.
    kinds = frame_types(len(sequence.yuv), intra_period)
    point = summarise(sequence, kinds, [0] * len(kinds), total_bytes, metrics)
    point.update({"qp": qp, "bpp_I": None, "bpp_P": None, "encode_seconds": seconds})
    return point


def ffmpeg_versions() -> str:
    out = subprocess.run([ffmpeg_executable(), "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    return " ".join(out.split()[:3])


def load_results(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def save_results(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, sort_keys=True, default=lambda v: None if isinstance(v, float) and math.isnan(v) else v))


def run_video_eval(cfg) -> None:
    """The stages of ``eval_video.py``: ``learned`` and ``anchors`` accumulate their points in
    ``learned.json`` and ``anchors.json`` of ``cfg.output_dir`` (each stage can run on its own),
    ``report`` writes ``summary.json``, ``tables.md`` and the plots from them."""
    from ..errors import CodecLabError
    from ..formats.model_file import load_model

    torch.set_grad_enabled(False)
    output, stages = Path(cfg.output_dir), list(cfg.stages)
    unknown = set(stages) - {"learned", "anchors", "report"}
    if unknown:
        raise CodecLabError(f"unknown stage {sorted(unknown)[0]!r}; stages are learned, anchors, report")
    paths = [Path(p) for p in (cfg.sequences or {}).values() if p is not None]
    if not paths and set(stages) - {"report"}:
        raise CodecLabError("no sequences selected (sequences=[basketballpass,...])")
    for path in paths:
        if not path.exists():
            raise CodecLabError(f"sequence {path} does not exist (set paths.data_dir or CODECLAB_DATA)")
    if "learned" in stages:
        _learned_stage(load_model(cfg.model), Path(cfg.model).name, cfg, paths, output / "learned.json")
    if "anchors" in stages:
        _anchor_stage(cfg, paths, output / "anchors.json")
    if "report" in stages:
        from .video_report import markdown_tables, training_curve, write_report

        results = {stage: load_results(output / f"{stage}.json") for stage in ("learned", "anchors")}
        summary = write_report(results, output, Path(cfg.reference_dir))
        (output / "tables.md").write_text(markdown_tables(summary))
        if cfg.training_log:
            training_curve(Path(cfg.training_log), output)
        print(f"summary, tables and plots written to {output}")


def _entry(results: dict, sequence: Sequence) -> dict:
    return results.setdefault(sequence.name, {"frames": len(sequence.clip.frames), "size": [sequence.clip.width, sequence.clip.height]})


def _learned_stage(codec, model_name: str, cfg, paths: list[Path], results_path: Path) -> None:
    from ..errors import CodecLabError
    from ..formats.video_file import analysis_of_frames

    results = load_results(results_path)
    # One GOP mode per file: the report labels every sequence of learned.json by this one flag.
    if results.get("adaptive_intra", cfg.adaptive_intra) != cfg.adaptive_intra:
        raise CodecLabError(f"{results_path} holds runs with adaptive_intra={results['adaptive_intra']}; "
                            f"write adaptive_intra={cfg.adaptive_intra} runs to another output_dir")
    results["model"] = model_name
    results["adaptive_intra"] = cfg.adaptive_intra
    for path in paths:
        sequence = load_sequence(path, cfg.frames)
        analysed = analysis_of_frames(codec, sequence.clip)
        for intra_period in [1, *cfg.intra_periods]:  # intra period 1: the same image codec, all-intra
            system = "all-intra" if intra_period == 1 else "stem"
            points = []
            for level in cfg.levels:
                points.append(learned_point(codec, sequence, intra_period, level, analysed, cfg.adaptive_intra))
                print(f"{sequence.name} {system} ip={intra_period} level={level}: {points[-1]['bpp']:.4f} bpp, "
                      f"{points[-1]['psnr-rgb']:.2f} dB RGB", flush=True)
            _entry(results, sequence).setdefault(system, {})[str(intra_period)] = points
            save_results(results_path, results)


def _anchor_stage(cfg, paths: list[Path], results_path: Path) -> None:
    anchors = cfg.video_anchors
    results = load_results(results_path)
    results["ffmpeg"] = ffmpeg_versions()
    for path in paths:
        sequence = load_sequence(path, cfg.frames)
        for encoder in anchors.encoders:
            for preset in anchors.presets:
                for intra_period in cfg.intra_periods:
                    points = []
                    for qp in anchors.qps:
                        points.append(anchor_point(sequence, encoder, preset, qp, intra_period))
                        print(f"{sequence.name} {encoder}-{preset} ip={intra_period} qp={qp}: {points[-1]['bpp']:.4f} bpp, "
                              f"{points[-1]['psnr-rgb']:.2f} dB RGB ({points[-1]['encode_seconds']:.1f} s)", flush=True)
                    _entry(results, sequence).setdefault(f"{encoder}-{preset}", {})[str(intra_period)] = points
                    save_results(results_path, results)
