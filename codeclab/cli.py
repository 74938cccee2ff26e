"""The ``codeclab`` command: encode, decode, info, export, bd-rate.

``encode`` and ``decode`` take images and videos: a ``.y4m`` file, a folder of PNG frames or an
MP4/MKV/... input is coded as a video (:mod:`codeclab.formats.video_file`); a video file decodes
to ``.y4m`` or to a folder of PNG frames.

User errors (missing or unreadable files, corrupt streams, the wrong model, unsupported
images, an output that is a device or FIFO, a full disk) print one line ``codeclab: error: ...``
and exit with status 1; no output file is left behind. Ctrl-C, SIGTERM and SIGHUP remove any
partly written output too, print one line and exit with 128 + the signal number. Anything else
is a bug and keeps its traceback. Videos are coded and decoded one frame at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .coding import CODERS, DEFAULT_CODER, get_coder
from .errors import CodecLabError
from .measures import bits_per_pixel


def _write_image(path: Path, image) -> None:
    from PIL import Image

    from .files import write_atomically

    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise CodecLabError(f"unknown output image format {path.suffix!r} (use .png)")
    write_atomically(path, lambda tmp: Image.fromarray(image).save(tmp, format=fmt))


def _check_output(output: Path, *inputs: Path, folder: bool = False) -> None:
    """Before any work: refuse an output that is one of the inputs (under any path), which would
    destroy it, or that is not a regular file (or, with ``folder``, a folder) or a new path."""
    from .files import check_output

    check_output(output, folder)
    for source in inputs:
        if output.exists() and source.exists() and os.path.samefile(output, source):
            raise CodecLabError(f"output {output} is the input {source}: refusing to overwrite it")


def _read_file(path: Path) -> bytes:
    from .files import check_input

    return check_input(path).read_bytes()


def _models_dirs(args) -> list[Path]:
    return [Path(d) for d in args.models_dir or []]


def _rate_level(codec, args) -> int | None:
    """The level of --quality or --level; without either, a variable-rate model's default quality."""
    from .formats.image_file import quality_level
    from .formats.model_header import DEFAULT_QUALITY

    if args.level is not None:
        return args.level
    quality = DEFAULT_QUALITY if args.quality is None and codec.rate_levels else args.quality
    return None if quality is None else quality_level(codec, quality)


def _level_text(codec, level: int | None, args) -> str:
    from .formats.model_header import DEFAULT_QUALITY

    if level is None:
        return ""
    chosen = args.quality is not None or args.level is not None or args.target_bpp is not None
    return f", level {level} of {codec.rate_levels}" + ("" if chosen else f", the default --quality {DEFAULT_QUALITY}")


def cmd_encode(args) -> None:
    from .data.video import is_video_path

    if is_video_path(args.image):
        return _encode_video(args)
    from .data.images import read_image
    from .formats.image_file import encode_image, encode_image_at_bpp
    from .files import write_atomically
    from .formats.model_file import load_model

    _check_output(args.output, args.image, args.model)
    image = read_image(args.image)
    codec, coder = load_model(args.model, _models_dirs(args)), get_coder(args.coder)
    start = time.perf_counter()
    if args.target_bpp is not None:
        if args.refine:
            raise CodecLabError("--refine with --target-bpp is not supported; choose the rate with --quality or --level")
        data, level = encode_image_at_bpp(codec, image, args.target_bpp, args.tile, progress=not args.quiet,
                                          fast_decode=args.fast_decode, coder=coder)
    else:
        level = _rate_level(codec, args)
        data = encode_image(codec, image, level, args.tile, args.threads, args.refine, args.refine_lmbda, progress=not args.quiet,
                            fast_decode=args.fast_decode, coder=coder)
    seconds = time.perf_counter() - start
    write_atomically(args.output, lambda tmp: Path(tmp).write_bytes(data))
    height, width = image.shape[:2]
    bpp = bits_per_pixel(len(data), height, width)
    print(f"{args.output}: {len(data)} bytes, {bpp:.4f} bpp ({width}x{height}{_level_text(codec, level, args)}), "
          f"encoded in {seconds:.2f} s")


def _encode_video(args) -> None:
    from .data.video import frame_range, open_video, parse_frame_range, parse_frame_rate
    from .files import write_atomically
    from .formats.model_file import load_model
    from .formats.video_file import default_intra_period, encode_video

    if args.target_bpp is not None:
        raise CodecLabError("--target-bpp is for images; choose a video's rate with --quality or --level")
    if args.refine:
        raise CodecLabError("--refine is for images; video frames are coded unrefined")
    _check_output(args.output, args.image, args.model)
    start, stop = parse_frame_range(args.frames)
    clip = frame_range(open_video(args.image, args.matrix, stop), start, stop)
    if args.fps is not None:
        clip.fps = parse_frame_rate(args.fps)
    if args.range is not None:
        clip.colour_range = args.range
    from .implicit.video_file import is_implicit_config

    if is_implicit_config(args.model):
        return _encode_implicit(args, clip)
    if args.time_budget is not None:
        raise CodecLabError("--time-budget is for fitted (NIRVANA) encoders; a model file codes at its own speed")
    codec = load_model(args.model, _models_dirs(args))
    intra_period = args.intra_period if args.intra_period is not None else default_intra_period(codec)
    level = _rate_level(codec, args)
    start = time.perf_counter()
    encoded = encode_video(codec, clip, intra_period, level, progress=not args.quiet, fast_decode=args.fast_decode,
                           coder=get_coder(args.coder), adaptive_intra=args.adaptive_intra)
    seconds = time.perf_counter() - start
    write_atomically(args.output, lambda tmp: Path(tmp).write_bytes(encoded.data))
    count = len(encoded.kinds)
    bpp = bits_per_pixel(len(encoded.data), clip.height, clip.width) / count
    print(f"{args.output}: {len(encoded.data)} bytes, {bpp:.4f} bpp, {count} frames of {clip.width}x{clip.height} "
          f"({encoded.kinds.count('I')} I, {encoded.kinds.count('P')} P{_level_text(codec, level, args)}), encoded in {seconds:.2f} s "
          f"({count / seconds:.2f} frames/s)")


def _encode_implicit(args, clip) -> None:
    """NIRVANA: the config's networks are fitted to the clip (``-m`` is its YAML config)."""
    from .files import write_atomically
    from .formats.model_header import quality_to_level
    from .implicit.video_file import encode_implicit, load_config

    if args.intra_period is not None or args.adaptive_intra or args.fast_decode or args.coder != DEFAULT_CODER:
        raise CodecLabError("--intra-period, --adaptive-intra, --fast-decode and --coder are for model files; NIRVANA codes groups of frames "
                            "with its own coder")
    config = load_config(args.model)
    levels = len(config.rate_weights)
    if args.quality is not None and not 0.0 <= args.quality <= 1.0:
        raise CodecLabError(f"quality must be in [0, 1], got {args.quality}")
    level = args.level if args.level is not None else quality_to_level(levels, 0.5 if args.quality is None else args.quality)
    if clip.count is None:  # an ffmpeg input: the group count is needed before fitting
        clip = clip.clip()
    encoded = encode_implicit(clip, config, level, args.time_budget, progress=not args.quiet)
    write_atomically(args.output, lambda tmp: Path(tmp).write_bytes(encoded.data))
    bpp = bits_per_pixel(len(encoded.data), clip.height, clip.width) / clip.count
    steps = sum(fit.steps for fit in encoded.fits)
    print(f"{args.output}: {len(encoded.data)} bytes, {bpp:.4f} bpp, {clip.count} frames of {clip.width}x{clip.height} "
          f"(NIRVANA, {len(encoded.fits)} groups, level {level} of {levels}, {steps} fitting steps), encoded in "
          f"{encoded.seconds:.2f} s")


def _decode_implicit(args, data: bytes) -> None:
    from .data.video import parse_frame_range, write_video
    from .implicit.video_file import decode_implicit

    if args.model is not None:
        raise CodecLabError("a NIRVANA file holds its own networks: decode it without -m")
    start, stop = parse_frame_range(args.frames)
    began = time.perf_counter()
    video = decode_implicit(data, start, stop, progress=not args.quiet)
    write_video(args.output, video)
    seconds = time.perf_counter() - began
    print(f"{args.output}: {video.count} frames of {video.width}x{video.height}, decoded and written in {seconds:.2f} s "
          f"({video.count / seconds:.2f} frames/s)")


def _load_model_for(args, model_hash: bytes):
    from .formats.model_file import find_model, load_model, model_search_dirs

    model_path = args.model or find_model(model_hash, model_search_dirs(_models_dirs(args), args.file))
    if model_path is None:
        raise CodecLabError(f"no model with hash {model_hash.hex()} found; pass it with -m MODEL or --models-dir DIR")
    return load_model(model_path, _models_dirs(args))


def _decode_video(args, data: bytes) -> None:
    from .data.video import parse_frame_range, write_video
    from .formats.video_file import decode_frames, unpack_video

    header, _ = unpack_video(data)
    codec = _load_model_for(args, header.model_hash)
    start, stop = parse_frame_range(args.frames)
    began = time.perf_counter()
    video = decode_frames(data, codec, start, stop, progress=not args.quiet)
    write_video(args.output, video)  # each frame written as it is decoded
    seconds = time.perf_counter() - began
    print(f"{args.output}: {video.count} frames of {video.width}x{video.height}, decoded and written in {seconds:.2f} s "
          f"({video.count / seconds:.2f} frames/s)")


def cmd_decode(args) -> None:
    from .formats import container
    from .formats.image_file import decode_image
    from .formats.video_container import is_video_file

    # No suffix: a video's folder of PNG frames (an image output needs a suffix anyway).
    _check_output(args.output, args.file, *([args.model] if args.model else []), folder=not args.output.suffix)
    data = _read_file(args.file)
    from .implicit.container import is_implicit_file

    if args.postfilter and (is_implicit_file(data) or is_video_file(data)):
        raise CodecLabError("--postfilter is for images; video frames are written as decoded")
    if is_implicit_file(data):
        return _decode_implicit(args, data)
    if is_video_file(data):
        return _decode_video(args, data)
    header, _ = container.unpack(data)
    codec = _load_model_for(args, header.model_hash)
    postfilter = None
    if args.postfilter:
        from .formats.network_file import load_postfilter

        postfilter = load_postfilter(args.postfilter)
    start = time.perf_counter()
    image = decode_image(data, codec, args.threads, progress=not args.quiet)
    seconds = time.perf_counter() - start
    note = ""
    if postfilter is not None:
        enhanced = postfilter.enhance(image)
        image, note = enhanced.image, f", post-filtered in {enhanced.seconds:.2f} s (exit {enhanced.exit} of {postfilter.exits})"
    _write_image(args.output, image)
    print(f"{args.output}: {image.shape[1]}x{image.shape[0]}, decoded in {seconds:.2f} s{note}")


def cmd_info(args) -> None:
    # Headers only: no torch, so this answers in a fraction of a second.
    from .formats import container
    from .formats.model_header import read_header
    from .formats.video_container import is_video_file, unpack_video
    from .implicit.container import is_implicit_file, unpack_implicit

    if args.file.suffix == ".safetensors":
        info = read_header(args.file).describe()
        info["file_bytes"] = args.file.stat().st_size
    else:
        data = _read_file(args.file)
        if is_implicit_file(data):
            info = unpack_implicit(data)[0].describe()
        else:
            info = unpack_video(data)[0].describe() if is_video_file(data) else container.unpack(data)[0].describe()
        info["file_bytes"] = len(data)
        # Per frame for a video (file bytes over all frames).
        info["bpp"] = round(bits_per_pixel(len(data), info["height"], info["width"]) / info.get("frame_count", 1), 6)
    print(json.dumps(info, indent=2))


def cmd_export(args) -> None:
    from .formats.model_file import export_model, load_source

    _check_output(args.output, args.source, folder=args.onnx)
    codec = load_source(args.source, args.compressai)
    if args.onnx:
        from .formats.onnx_export import export_onnx

        names = ", ".join(path.name for path in export_onnx(codec, args.output))
        print(f"{args.output}: {names} ({codec.codec_id}, float32, dynamic batch/height/width; quantisation, gains "
              "and entropy coding stay in CodecLab)")
        return
    codec = export_model(codec, args.output, args.weights_dtype, args.arithmetic, args.base_model)
    portable = "portable" if codec.entropy_model.portable else "NOT portable (decodes only under the float configuration that wrote it)"
    based = f", base model {args.base_model}" if args.base_model else ""
    print(f"{args.output}: {codec.codec_id} {json.dumps(codec.config)}, model {codec.model_sha256[:16]}{based}, {portable}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codeclab", description="CodecLab learned image codecs")
    commands = parser.add_subparsers(dest="command", required=True)

    encode = commands.add_parser("encode", help="encode an image or a video (.y4m, a folder of PNG frames, .mp4, ...)")
    encode.add_argument("image", type=Path, help="image file, or video: .y4m, a folder of PNG frames, .mp4/.mkv/...")
    encode.add_argument("-m", "--model", type=Path, required=True,
                        help="model file (.safetensors), or for video a NIRVANA config (configs/implicit/nirvana.yaml: fitted to the clip)")
    encode.add_argument("-o", "--output", type=Path, required=True)
    encode.add_argument("--models-dir", action="append",
                        help="folder searched for the model's base model (repeatable; also $CODECLAB_MODELS)")
    rate = encode.add_mutually_exclusive_group()
    rate.add_argument("--quality", type=float, default=None,
                      help="variable-rate models: 0 (lowest rate) to 1 (highest); the nearest level is used "
                           "(default 0.5 when no rate is given)")
    rate.add_argument("--level", type=int, default=None, help="variable-rate models: the rate level itself")
    rate.add_argument("--target-bpp", type=float, default=None,
                      help="variable-rate models: the highest level whose file is at most this many bits per pixel")
    encode.add_argument("--tile", type=int, default=1024,
                        help="images larger than this (pixels, either side) are coded as independent tiles of this size")
    encode.add_argument("--threads", type=int, default=1, help="tiles coded at once")
    encode.add_argument("--refine", type=int, default=0, metavar="N",
                        help="images: N iterations of SGA latent refinement before coding (slow; the reference uses 2000); "
                             "any decoder reads the file")
    encode.add_argument("--refine-lmbda", type=float, default=None,
                        help="fixed-rate models: the lambda the model was trained for (default: the one its file records; "
                             "variable-rate: the level's)")
    video = encode.add_argument_group("video")
    video.add_argument("--intra-period", type=int, default=None,
                       help="an I-frame every N frames; -1: the first only (default 12 for video models, 1 for image models)")
    video.add_argument("--adaptive-intra", action="store_true",
                       help="also code every P-frame as an I-frame and keep the smaller (slower encoding; any decoder reads it)")
    video.add_argument("--frames", default=None, metavar="N|START:STOP",
                       help="code only the first N frames, or frames START to STOP - 1 (numbered from 0)")
    video.add_argument("--matrix", choices=("bt601", "bt709"), default="bt601", help="Y4M input: the YUV->RGB matrix")
    video.add_argument("--range", choices=("limited", "full"), default=None, help="Y4M input: override the file's range")
    video.add_argument("--fps", default=None, help="frame rate N or N:D (PNG folders have none; default 25)")
    video.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                       help="NIRVANA: seconds of fitting for the whole clip (each group gets its share of what is left)")
    encode.add_argument("--coder", choices=sorted(CODERS.wire_ids), default=DEFAULT_CODER,
                        help=f"entropy coder (default {DEFAULT_CODER}); decode reads it from the file")
    encode.add_argument("--fast-decode", action="store_true",
                        help="let decoders run the synthesis at their CPU's fastest precision (1.6-2.6x faster to decode "
                             "in reports/portable_pixels; the decoded pixels then depend on the CPU); "
                             "default: the same pixels everywhere")
    encode.add_argument("--quiet", action="store_true", help="no progress bars (shown only on a terminal)")
    encode.set_defaults(func=cmd_encode)

    decode = commands.add_parser("decode", help="decode a CodecLab file to an image")
    decode.add_argument("file", type=Path)
    decode.add_argument("-o", "--output", type=Path, required=True,
                        help="output image (.png); for a video, .y4m or a new folder of PNG frames")
    decode.add_argument("--frames", default=None, metavar="N|START:STOP",
                        help="video: decode only the first N frames, or frames START to STOP - 1 (numbered from 0; "
                             "decoding starts at the I-frame at or before START)")
    decode.add_argument("-m", "--model", type=Path, default=None, help="model file; default: found by the file's model hash")
    decode.add_argument("--models-dir", action="append", help="folder searched for the model and its base model (repeatable; also $CODECLAB_MODELS)")
    decode.add_argument("--threads", type=int, default=1, help="tiles decoded at once")
    decode.add_argument("--postfilter", type=Path, default=None, metavar="FILE",
                        help="an image post-filter file (e.g. RBQE: python train.py experiment=rbqe) applied to the decoded image")
    decode.add_argument("--quiet", action="store_true", help="no progress bars (shown only on a terminal)")
    decode.set_defaults(func=cmd_decode)

    info = commands.add_parser("info", help="print a CodecLab file's header, or a model file's description (with its default rate)")
    info.add_argument("file", type=Path, help="a CodecLab file, or a model file (.safetensors)")
    info.set_defaults(func=cmd_info)

    export = commands.add_parser("export", help="turn a training checkpoint, a model file or a compressai state_dict into a model file "
                                                     "(or, --onnx, ONNX networks)")
    export.add_argument("source", type=Path, help="training checkpoint (.ckpt), model file (.safetensors) or, with --compressai, a state_dict")
    export.add_argument("--compressai", default=None, metavar="ARCH",
                        help="the source is a compressai state_dict of this model (bmshj2018-hyperprior, mbt2018-mean, ...)")
    export.add_argument("--arithmetic", choices=("integer", "float"), default="integer",
                        help="entropy-parameter networks: integer (default; files decode identically on every machine) or float")
    export.add_argument("-o", "--output", type=Path, required=True, help="model file, or with --onnx a folder")
    export.add_argument("--onnx", action="store_true",
                        help="write the transforms (and hyper networks) as ONNX files into the folder -o instead "
                             "(bmshj2018-factorized, bmshj2018-hyperprior, mbt2018-mean)")
    export.add_argument("--weights-dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                        help="storage of the parameters (half types halve the file; the model computes with the rounded values)")
    export.add_argument("--base-model", type=Path, default=None,
                        help="a model file holding part of this one (a video codec's image codec): its tensors are left out "
                             "and the file names it by hash (found beside the file, in its zoo/ or with --models-dir)")
    export.set_defaults(func=cmd_export)

    from .evaluation.bd_rate_cli import add_parser as add_bd_rate

    add_bd_rate(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .files import Terminated, terminations_raise

    args = build_parser().parse_args(argv)
    try:
        with terminations_raise():
            args.func(args)
    except CodecLabError as err:
        print(f"codeclab: error: {err}", file=sys.stderr)
        return 1
    except Terminated as stop:
        print(f"codeclab: error: stopped by {stop}", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``codeclab info ... | head -1``): nothing more to say to it, and
        # the interpreter's final flush must not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 0


if __name__ == "__main__":
    sys.exit(main())
