"""Video files: encoding and decoding clips through the video container (:mod:`.video_container`:
the layout, :func:`pack_video`, :func:`unpack_video`).

I-frames are coded by the image codec (two streams for mbt2018-mean), P-frames by the
spatiotemporal model given the previous decoded latent; a decoder can start at any I-frame
(``decode_video``'s ``start``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..codecs import Codec
from ..codecs.stem import VideoCodec
from ..coding import EntropyCoder, get_coder
from ..data.images import check_pixels, max_tile_pixels
from ..data.video import Clip, VideoStream
from ..errors import CodecLabError
from ..progress import progress_bar
from .file_coding import (
    CheckedCoder, check_file_level, check_level, check_model, codec_input, file_synthesis, latent_crc, model_hash, padded_size,
    stream_errors,
)
from .video_container import FrameRecord, VideoHeader, frame_check, pack_video, sequence_crc, unpack_video

DEFAULT_INTRA_PERIOD = 12  # STEM's test GOP


def check_frame_size(codec: Codec, height: int, width: int, what: str) -> tuple[int, int]:
    """The padded frame size, after refusing frames over the pixel limits (video is not tiled)."""
    check_pixels(height, width, what)
    size = padded_size(height, width, codec.downsampling)
    if size[0] * size[1] > max_tile_pixels():
        raise CodecLabError(f"{what} ({width}x{height}) are over the per-frame limit of {max_tile_pixels()} pixels "
                            "(CODECLAB_MAX_TILE_PIXELS)")
    return size


def frame_type(index: int, intra_period: int) -> str:
    """``"I"`` or ``"P"``: an I-frame every ``intra_period`` frames (0 or -1: the first only)."""
    return "I" if index == 0 or (intra_period > 0 and index % intra_period == 0) else "P"


def frame_types(count: int, intra_period: int) -> list[str]:
    """:func:`frame_type` of each of ``count`` frames."""
    return [frame_type(t, intra_period) for t in range(count)]


def default_intra_period(codec: Codec) -> int:
    """STEM's GOP for a video codec; 1 (all-intra) for an image codec, which has no P-frames."""
    return DEFAULT_INTRA_PERIOD if isinstance(codec, VideoCodec) else 1


def _check_codec_for(codec: Codec, kinds: list[str]) -> None:
    if "P" in kinds and not isinstance(codec, VideoCodec):
        raise CodecLabError(f"model {codec.codec_id!r} is an image codec: it codes video all-intra only (--intra-period 1)")


@dataclass
class EncodedVideo:
    data: bytes
    kinds: list[str]
    frame_bytes: list[int]
    latents: list[torch.Tensor]  # y_hat of every frame (what the decoder reconstructs from), when kept


@torch.no_grad()
def encode_video(codec: Codec, clip: Clip | VideoStream, intra_period: int = DEFAULT_INTRA_PERIOD, level: int | None = None,
                 analysed: list[torch.Tensor] | None = None, progress: bool = False, keep_latents: bool = False,
                 fast_decode: bool = False, coder: EntropyCoder | None = None, adaptive_intra: bool = False) -> EncodedVideo:
    """Code every frame of ``clip``, reading each only when it is coded (a :class:`VideoStream`
    is consumed once), so memory holds one frame, its reference and the coded bytes; the frame
    size is checked before the first frame is read. ``intra_period``: see :func:`frame_type`.
    ``analysed``: the frames' ``g_a`` outputs (:func:`analysis_of_frames`) when the caller codes one
    clip many times; ``progress``: a bar per frame on a terminal; ``keep_latents``: return every
    frame's ``y_hat`` (for measuring the decoder's frames without decoding the file); ``fast_decode``:
    let decoders use the fast, CPU-dependent synthesis (video container version 2); ``coder``: the
    entropy coder, recorded in the file (None: the default, ``codeclab``); ``adaptive_intra``: code each
    frame :func:`frame_type` makes a P-frame both ways and keep the I-frame where its streams are
    smaller (the encoder's mode decision, like x265's scene cuts by cost; the decoder reads each
    frame's kind from the file). Rate alone decides: at one level I- and P-frames share the
    quantisation step, so their distortion is about equal. Encoding then also runs the image
    codec's entropy coding for every P-frame."""
    if intra_period < -1:
        raise CodecLabError(f"intra period must be a positive number of frames, or -1 (first frame only); got {intra_period}")
    check_level(codec, level, "--quality or --level")
    height, width = clip.height, clip.width
    size = check_frame_size(codec, height, width, "the video's frames")
    codec.ensure_tables()
    coder = coder or get_coder()
    if analysed is None:
        analysed = (codec.analysis(codec_input(frame, codec.downsampling)) for frame in clip.frames)
    kinds, frames, latents, crcs, reference = [], [], [], [], None
    for index, y in enumerate(progress_bar(analysed, total=clip.count, desc="encode", unit="frame", enabled=progress)):
        kind = frame_type(index, intra_period)
        _check_codec_for(codec, [kind])
        if kind == "I":
            intra = codec.compress_y(y, size, coder, level)
            streams, reference = intra.strings, intra.y_hat
        else:
            streams, predicted = codec.compress_y_p(y, reference, coder, level)
            intra = codec.compress_y(y, size, coder, level) if adaptive_intra else None
            if intra is not None and sum(map(len, intra.strings)) < sum(map(len, streams)):
                kind, streams, reference = "I", intra.strings, intra.y_hat
            else:
                reference = predicted
        kinds.append(kind)
        frames.append(streams)
        crcs.append(latent_crc(reference))
        if keep_latents:
            latents.append(reference)
    if not frames:
        raise CodecLabError("the video has no frames")
    header = VideoHeader(codec.codec_id, model_hash(codec), width, height, clip.fps, clip.colour_range, clip.matrix,
                         clip.source == "y4m", max(intra_period, 0), level,
                         tuple(FrameRecord(k, tuple(map(len, s)), 0) for k, s in zip(kinds, frames)), coder.name,
                         fast_decode)
    sequence = sequence_crc(header)
    checks = (frame_check(sequence, t, kind, crc) for t, (kind, crc) in enumerate(zip(kinds, crcs)))
    header = replace(header, records=tuple(replace(record, latent_check=check) for record, check in zip(header.records, checks)))
    data = pack_video(header, frames)
    return EncodedVideo(data, kinds, [sum(map(len, s)) for s in frames], latents)


def analysis_of_frames(codec: Codec, clip: Clip) -> list[torch.Tensor]:
    """``g_a`` of every frame (padded as :func:`encode_video` pads): level-independent."""
    with torch.no_grad():
        return [codec.analysis(codec_input(frame, codec.downsampling)) for frame in clip.frames]


def decode_video_y(data: bytes, codec: Codec, start: int = 0, stop: int | None = None):
    """``(header, iterator of y_hat)`` of frames ``start .. stop - 1``: entropy decoding only,
    from the last I-frame at or before ``start``; every check comes before the first frame."""
    header, offset = unpack_video(data)
    check_model(header, codec)  # the video header has the same codec id and model hash fields
    coder = get_coder(header.coder)  # the coder the file names
    size = check_frame_size(codec, header.height, header.width, "the file's frames")
    check_file_level(codec, header.level)
    kinds = [r.kind for r in header.records]
    count = len(kinds)
    stop = count if stop is None else min(stop, count)
    if not 0 <= start < stop:
        raise CodecLabError(f"frames {start}:{stop} are not in a file of {count} frames")
    if kinds[0] != "I":
        raise CodecLabError("corrupt file: the first frame is a P-frame (no reference frame)")
    _check_codec_for(codec, kinds)
    first = max(t for t in range(start + 1) if kinds[t] == "I")
    offsets = np.cumsum([0] + [sum(r.stream_lengths) for r in header.records])
    codec.ensure_tables()
    sequence = sequence_crc(header)

    def frames():
        reference = None
        for t in range(first, stop):
            record = header.records[t]
            chunk = data[offset + offsets[t] : offset + offsets[t + 1]]
            if zlib.crc32(chunk) != record.crc:
                raise CodecLabError(f"corrupt file: frame {t} checksum mismatch")
            expected = codec.num_streams if record.kind == "I" else codec.temporal_model.num_streams
            if len(record.stream_lengths) != expected:
                raise CodecLabError(f"corrupt file: frame {t} has {len(record.stream_lengths)} streams, expected {expected}")
            streams = [s.tobytes() for s in np.split(np.frombuffer(chunk, dtype=np.uint8), np.cumsum(record.stream_lengths)[:-1])]
            checked = CheckedCoder(coder)
            with torch.no_grad(), stream_errors():
                if record.kind == "I":
                    reference = codec.decompress_y(streams, size, checked, header.level)
                else:
                    reference = codec.decompress_y_p(streams, reference, checked, header.level)
                checked.check_all_ended()
            if record.latent_check is not None and frame_check(sequence, t, record.kind, latent_crc(reference)) != record.latent_check:
                raise CodecLabError(f"corrupt file: frame {t} fails its latent check (a damaged or edited file, or a model "
                                    "with float entropy parameters decoded under another configuration)")
            if t >= start:
                yield reference

    return header, frames()


def decode_frames(data: bytes, codec: Codec, start: int = 0, stop: int | None = None, progress: bool = False) -> VideoStream:
    """Frames ``start .. stop - 1`` of a video file (decoding from the last I-frame at or before
    ``start``), decoded one at a time as the stream is consumed, with the source's frame rate,
    range and matrix; every check of the file comes first. ``progress``: a bar per frame on a terminal."""
    header, latents = decode_video_y(data, codec, start, stop)
    count = len(range(len(header.records))[start:stop])

    pixels = file_synthesis(codec, header.fast_decode)

    def frames():
        for y_hat in progress_bar(latents, total=count, desc="decode", unit="frame", enabled=progress):
            yield pixels(y_hat)[: header.height, : header.width]  # no_grad inside: not across the yield

    return VideoStream(frames(), header.width, header.height, count, header.fps, header.colour_range, header.matrix,
                       "y4m" if header.y4m_source else "png")


def decode_video(data: bytes, codec: Codec, start: int = 0, stop: int | None = None, progress: bool = False) -> Clip:
    """Every frame of :func:`decode_frames` in memory, as a :class:`Clip`."""
    return decode_frames(data, codec, start, stop, progress).clip()
