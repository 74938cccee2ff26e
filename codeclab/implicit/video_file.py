"""Implicit video files (NIRVANA): encoding fits one small network per group of frames.

``codeclab encode clip.y4m -m configs/implicit/nirvana.yaml --quality Q -o clip.clnv`` runs
:func:`encode_implicit`; ``codeclab decode clip.clnv -o out.y4m`` runs :func:`decode_implicit`
(no model file: the file holds the networks). The method: :mod:`.nirvana`; the weights' coding:
:mod:`.weights`; the file: :mod:`.container`.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..coding import get_coder
from ..data.video import Clip, VideoStream
from ..errors import CodecLabError
from ..progress import progress_bar
from .container import ImplicitHeader, group_count, pack_implicit, unpack_implicit
from .nirvana import GroupFit, GroupNetwork, NirvanaConfig, fit_group, frames_to_tiles, render_group, tile_grid, tiles_to_frames
from .weights import decode_group, encode_group

CONFIG_TARGET = "codeclab.implicit.nirvana.NirvanaConfig"
# The format fixes the coder: the histograms are coded by CodecLab's own rANS (encode_categorical).
CODER = "codeclab"


def load_config(path: Path) -> NirvanaConfig:
    """A NIRVANA encoder config (``configs/implicit/nirvana.yaml``): a YAML mapping whose ``_target_``
    is :data:`CONFIG_TARGET` and whose other keys are :class:`NirvanaConfig`'s. Nothing else is
    instantiated, so a config file cannot run code."""
    import yaml

    try:
        values = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise CodecLabError(f"cannot read the NIRVANA config {path}: {(str(err).splitlines() or [type(err).__name__])[0]}") from None
    if not isinstance(values, dict) or values.get("_target_") != CONFIG_TARGET:
        raise CodecLabError(f"{path} is not a NIRVANA config (a YAML mapping with _target_: {CONFIG_TARGET})")
    return NirvanaConfig.from_dict({k: v for k, v in values.items() if k != "_target_"})


def is_implicit_config(path: Path) -> bool:
    return path.suffix.lower() in (".yaml", ".yml")


@dataclass
class EncodedImplicit:
    data: bytes
    fits: list[GroupFit] = field(default_factory=list)
    seconds: float = 0.0


def encode_implicit(clip: Clip | VideoStream, config: NirvanaConfig, level: int, time_budget: float | None = None,
                    seed: int = 0, progress: bool = False) -> EncodedImplicit:
    """Fit and code ``clip`` (module docstring of :mod:`.nirvana`) at rate level ``level``
    (an index into ``config.rate_weights``). ``time_budget``: seconds for the whole clip; each
    group gets the share of what is left that its step allotment is of those left (group 0:
    ``first_steps``, the others ``group_steps``), so a slow group leaves less to the next.
    The frames of one group are read at a time."""
    if not 0 <= level < len(config.rate_weights):
        raise CodecLabError(f"rate level {level} out of range [0, {len(config.rate_weights)})")
    if time_budget is not None and not 0 < time_budget < math.inf:
        raise CodecLabError(f"time budget must be a positive number of seconds, got {time_budget}")
    if clip.count is None:
        raise CodecLabError("NIRVANA needs the frame count before coding (use a Y4M file or a folder of frames)")
    started = time.monotonic()
    _, _, coords = tile_grid(clip.height, clip.width, config.patch)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    arch = config.architecture()
    network = GroupNetwork(**arch)
    coder = get_coder(CODER)
    rate_weight = config.rate_weights[level]
    count, size = clip.count, config.group_size
    groups, fits, previous, previous_floats, target_psnr = [], [], None, None, None
    frames = iter(clip.frames)
    allotted = [config.first_steps] + [config.group_steps] * (group_count(count, size) - 1)  # each group's most steps
    bar = progress_bar(total=sum(allotted), desc="fit", unit="step", enabled=progress)
    for index in range(len(allotted)):
        group = np.stack([next(frames) for _ in range(min(size, count - index * size))])
        targets = frames_to_tiles(group, config.patch)
        deadline = math.inf
        if time_budget is not None:  # what is left, shared in proportion to the groups' step allotments
            left = time_budget - (time.monotonic() - started)
            deadline = time.monotonic() + left * allotted[index] / sum(allotted[index:])
        fit = fit_group(network, targets, coords, previous, config, rate_weight, allotted[index], target_psnr, deadline,
                        generator, on_step=bar.update)
        bar.update(allotted[index] - fit.steps)
        if index == 0:  # later groups stop once they reach group 0's PSNR
            target_psnr = fit.psnr
        network.round_floats_to_half()
        integers = network.integers()
        floats = [t.detach().clone() for t in network.floats()]
        groups.append(encode_group(integers, previous, floats, coder, previous_floats))
        fits.append(fit)
        previous, previous_floats = integers, floats
    bar.close()
    header = ImplicitHeader(arch, clip.width, clip.height, count, clip.fps, clip.colour_range, clip.matrix,
                            clip.source == "y4m", ())
    return EncodedImplicit(pack_implicit(header, groups), fits, time.monotonic() - started)


def decode_implicit(data: bytes, start: int = 0, stop: int | None = None, progress: bool = False) -> VideoStream:
    """Frames ``start .. stop - 1`` of an implicit video file, one group's forward pass at a time
    (the groups before ``start`` are entropy-decoded only); every header check comes first."""
    header, offset = unpack_implicit(data)
    stop = header.frames if stop is None else min(stop, header.frames)
    if not 0 <= start < stop:
        raise CodecLabError(f"frames {start}:{stop} are not in a file of {header.frames} frames")
    arch = header.architecture
    rows, cols, coords = tile_grid(header.height, header.width, arch["patch"])
    network = GroupNetwork(**arch)
    shapes = [tuple(layer.proxy.shape) for layer in network.quantized_layers()]
    float_shapes = [tuple(t.shape) for t in network.floats()]
    coder = get_coder(CODER)
    last_group = (stop - 1) // arch["group_size"]

    def frames():
        position, previous, previous_floats = offset, None, None
        for index in range(last_group + 1):
            lengths, crc = header.groups[index]
            chunk = data[position : position + sum(lengths)]
            position += sum(lengths)
            if zlib.crc32(chunk) != crc:
                raise CodecLabError(f"corrupt file: group {index} checksum mismatch")
            streams = np.split(np.frombuffer(chunk, dtype=np.uint8), np.cumsum(lengths)[:-1])
            integers, floats = decode_group([s.tobytes() for s in streams], shapes, float_shapes, previous, coder,
                                            previous_floats)
            previous, previous_floats = integers, floats
            wanted = [t for t in header.group_frames(index) if start <= t < stop]
            if not wanted:
                continue
            network.load_coded(integers, floats)
            members = header.group_frames(index)
            tiles = render_group(network, coords, len(members))
            pictures = tiles_to_frames(tiles, rows, cols, header.height, header.width)
            for t in wanted:
                yield pictures[t - members.start]

    stream = progress_bar(frames(), total=stop - start, desc="decode", unit="frame", enabled=progress)
    return VideoStream(iter(stream), header.width, header.height, stop - start, header.fps, header.colour_range,
                       header.matrix, "y4m" if header.y4m_source else "png")
