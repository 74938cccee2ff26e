"""Coding a NIRVANA group's network: integer weight changes and float16 side information.

A group is three streams:

0. **side information**: every decoder and bias (:meth:`GroupNetwork.floats`) as float16,
   little endian, in layer order (the length is fixed by the architecture); empty when they are
   the previous group's (a group that needed no fitting step).
1. **tables**: for each quantised weight tensor, in layer order, the integer change ``d`` from
   the previous group's integers (the integers themselves for the first group) is described by
   ``zigzag(min d)`` and ``K = max d - min d + 1`` (varints), then, when ``K > 1``, the histogram
   of ``d - min d`` (``K`` varints summing to the tensor's size).
2. **symbols**: rANS (:meth:`~codeclab.coding.native.CodecLabStreamEncoder.encode_categorical`)
   of every ``d - min d`` under its tensor's histogram, in chunks of at most
   ``CHUNK_ENTRIES // K`` symbols so that no table of ``symbols x K`` counts outgrows 16 MB.

The histogram is the exact empirical distribution, so the rate is the tensor's empirical
entropy plus the table; every count, range and magnitude is checked before it is used.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..coding import EntropyCoder
from ..errors import CodecLabError
from ..formats.container import ByteReader, encode_varint

MAX_CATEGORIES = 1 << 16
MAX_MAGNITUDE = 1 << 20  # of a decoded integer weight
CHUNK_ENTRIES = 1 << 22


def _zigzag(value: int) -> int:
    return 2 * value if value >= 0 else -2 * value - 1


def _unzigzag(value: int) -> int:
    return value // 2 if value % 2 == 0 else -(value + 1) // 2


def _chunks(count: int, categories: int):
    size = max(1, CHUNK_ENTRIES // categories)
    return [(start, min(start + size, count)) for start in range(0, count, size)]


def float16_bytes(floats: list[torch.Tensor]) -> bytes:
    return b"".join(t.detach().to(torch.float16).numpy().astype("<f2").tobytes() for t in floats)


def encode_group(integers: list[torch.Tensor], previous: list[torch.Tensor] | None, floats: list[torch.Tensor],
                 coder: EntropyCoder, previous_floats: list[torch.Tensor] | None = None) -> list[bytes]:
    """The three streams of a group (module docstring)."""
    side = float16_bytes(floats)
    if previous_floats is not None and side == float16_bytes(previous_floats):
        side = b""
    tables, encoder = bytearray(), coder.encoder()
    for index, values in enumerate(integers):
        change = values.numpy().astype(np.int64).ravel()
        if previous is not None:
            change = change - previous[index].numpy().astype(np.int64).ravel()
        low, high = int(change.min()), int(change.max())
        categories = high - low + 1
        if categories > MAX_CATEGORIES:
            raise CodecLabError(f"nirvana: weight tensor {index} changes over {categories} values (at most {MAX_CATEGORIES})")
        tables += encode_varint(_zigzag(low)) + encode_varint(categories)
        if categories == 1:
            continue
        symbols = (change - low).astype(np.int32)
        counts = np.bincount(symbols, minlength=categories).astype(np.int32)
        tables += b"".join(encode_varint(int(c)) for c in counts)
        for start, stop in _chunks(len(symbols), categories):
            encoder.encode_categorical(symbols[start:stop], np.broadcast_to(counts, (stop - start, categories)))
    return [side, bytes(tables), encoder.finish()]


def decode_group(streams: list[bytes], shapes: list[tuple[int, ...]], float_shapes: list[tuple[int, ...]],
                 previous: list[torch.Tensor] | None, coder: EntropyCoder,
                 previous_floats: list[torch.Tensor] | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``(integers, floats)`` of a group from its streams; any inconsistency is a :class:`CodecLabError`."""
    if len(streams) != 3:
        raise CodecLabError(f"corrupt file: a group has {len(streams)} streams, expected 3")
    side, tables, symbols = streams
    if not side and previous_floats is not None:
        floats = previous_floats
    else:
        float_count = sum(math.prod(s) for s in float_shapes)
        if len(side) != 2 * float_count:
            raise CodecLabError(f"corrupt file: {len(side)} bytes of side information, expected {2 * float_count}")
        values = torch.from_numpy(np.frombuffer(side, dtype="<f2").astype(np.float32))
        if not torch.isfinite(values).all():
            raise CodecLabError("corrupt file: side information is not finite")
        floats = [t.reshape(s) for t, s in zip(torch.split(values, [math.prod(s) for s in float_shapes]), float_shapes)]
    reader = ByteReader(tables)
    try:
        decoder = coder.decoder(symbols)
    except ValueError as err:
        raise CodecLabError(f"corrupt file: {err}") from None
    integers = []
    for index, shape in enumerate(shapes):
        count = math.prod(shape)
        low, categories = _unzigzag(reader.varint()), reader.varint()
        if not 1 <= categories <= MAX_CATEGORIES or abs(low) > 2 * MAX_MAGNITUDE:
            raise CodecLabError(f"corrupt file: weight tensor {index} has {categories} values from {low}")
        if categories == 1:
            change = np.full(count, low, dtype=np.int64)
        else:
            counts = np.array([reader.varint() for _ in range(categories)], dtype=np.int64)
            if counts.sum() != count or counts.max() > count:
                raise CodecLabError(f"corrupt file: weight tensor {index}'s histogram does not count {count} weights")
            counts32 = counts.astype(np.int32)
            parts = []
            try:
                for start, stop in _chunks(count, categories):
                    parts.append(decoder.decode_categorical(np.broadcast_to(counts32, (stop - start, categories))))
            except ValueError as err:
                raise CodecLabError(f"corrupt file: weight stream: {err}") from None
            change = np.concatenate(parts).astype(np.int64) + low
        if previous is not None:
            change = change + previous[index].numpy().astype(np.int64).ravel()
        if np.abs(change).max(initial=0) > MAX_MAGNITUDE:
            raise CodecLabError(f"corrupt file: weight tensor {index} holds integers over {MAX_MAGNITUDE}")
        integers.append(torch.from_numpy(change.astype(np.int32)).reshape(shape))
    if reader.pos != len(tables) or not decoder.at_end():
        raise CodecLabError("corrupt file: a group's weight streams hold bytes past their weights")
    return integers, floats
