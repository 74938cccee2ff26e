"""NIRVANA: LilNetX's quantised layers and density, the patch-wise network, exact coding of the
integer weight changes, the implicit video container against hostile files, and the CLI."""

import math
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from codeclab.coding import get_coder
from codeclab.data.video import Clip, write_video
from codeclab.errors import CodecLabError
from codeclab.implicit import architecture
from codeclab.implicit import container as implicit_container
from codeclab.implicit import nirvana, video_file, weights
from codeclab.implicit.container import unpack_implicit
from codeclab.implicit.nirvana import (
    BitEstimator, NirvanaConfig, GroupNetwork, QuantizedConv2d, QuantizedLinear, fit_group, fourier_features, frames_to_tiles,
    render_group, tile_grid, tiles_to_frames,
)
from codeclab.implicit.architecture import network_weight_count
from codeclab.implicit.video_file import decode_implicit, encode_implicit, load_config
from tests.conftest import ROOT, run_main

TINY = dict(patch=8, group_size=2, channels=4, stages=1, hidden=8, frequencies=2, first_steps=6, group_steps=4,
            batch_patches=8, check_every=2)


def moving_clip(count=5, height=20, width=28, seed=0, static=False):
    """A smooth pattern drifting one pixel a frame (or standing still)."""
    rng = np.random.default_rng(seed)
    base = np.cumsum(np.cumsum(rng.integers(-3, 4, (height, width + count, 3)), axis=0), axis=1)
    base = ((base - base.min()) / np.ptp(base) * 255).astype(np.uint8)
    return Clip([base[:, (0 if static else t) : (0 if static else t) + width] for t in range(count)], Fraction(25))


def test_the_shipped_config_is_the_default_and_its_constants_are_pinned():
    config = load_config(ROOT / "configs/implicit/nirvana.yaml")
    assert config == NirvanaConfig()
    assert config.architecture() == {"patch": 16, "group_size": 4, "channels": 24, "stages": 2, "hidden": 64, "frequencies": 0,
                                     "siren": 1}
    assert config.rate_weights == (2e-2, 5e-3, 1e-3)
    assert (config.lr, config.side_lr, config.group_lr_factor, config.prob_lr) == (2e-2, 2e-3, 0.02, 1e-3)
    assert (config.first_steps, config.group_steps, config.batch_patches, config.check_every) == (1500, 400, 64, 25)
    assert nirvana.BOUNDARY == 3.0 and nirvana.SIREN_OMEGA == 30.0  # LilNetX's boundary 3; SIREN's omega_0
    # The named deviation: GELU layers on Fourier features, the rest alike.
    gelu = load_config(ROOT / "configs/implicit/nirvana_gelu.yaml")
    assert (gelu.siren, gelu.frequencies, gelu.lr, gelu.side_lr) == (0, 8, 6e-2, 6e-3)
    assert {k: v for k, v in gelu.as_dict().items() if k not in ("siren", "frequencies", "lr", "side_lr")} == \
        {k: v for k, v in config.as_dict().items() if k not in ("siren", "frequencies", "lr", "side_lr")}


def test_siren_layers_are_sitzmanns():
    torch.manual_seed(0)
    network = GroupNetwork(patch=8, group_size=1, channels=2, stages=1, hidden=16, frequencies=0, siren=1)
    first, second = network.mlp
    # SIREN's start: U(-1/n, 1/n) for the first layer, U(-sqrt(6/n)/30, sqrt(6/n)/30) after (quantised to 7 levels).
    assert torch.equal(first.decoder, torch.tensor([1 / 2 / 3.0]))
    assert torch.equal(second.decoder, torch.tensor([math.sqrt(6 / 16) / 30 / 3.0]))
    coords = torch.rand(3, 2) * 2 - 1
    hidden = torch.sin(30 * first(coords))
    features = torch.sin(30 * second(hidden)).reshape(3, 2, 4, 4)
    expected = torch.sigmoid(network.heads[0](torch.nn.functional.gelu(torch.nn.functional.pixel_shuffle(network.upsampling[0](features), 2))))
    assert torch.allclose(network(coords)[:, 0], expected)
    gelu = GroupNetwork(patch=8, group_size=1, channels=2, stages=1, hidden=16, frequencies=0, siren=0)
    assert torch.equal(gelu.mlp[0].decoder, torch.tensor([1 / math.sqrt(2) / 3.0]))


def test_quantized_layers_start_as_lilnetx_does():
    torch.manual_seed(0)
    conv, dense = QuantizedConv2d(6, 5), QuantizedLinear(10, 7)
    for layer, fan_in in ((conv, 6 * 9), (dense, 10)):
        assert layer.proxy.abs().max() <= 3.0 and layer.proxy.abs().max() > 2.5  # uniform in [-boundary, boundary]
        assert layer.bias.abs().max() <= 1 / math.sqrt(fan_in)
    # The decoders map integers to weights of PyTorch's default bound: a 9x9 tap matrix, a scalar.
    assert torch.equal(conv.decoder, torch.eye(9) * (1 / math.sqrt(54) / 3.0))
    assert torch.equal(dense.decoder, torch.tensor([1 / math.sqrt(10) / 3.0]))
    integers = torch.round(conv.proxy.detach())
    mixed = conv.decoder.detach().clone()
    mixed[0, 1] = 0.5  # a tap's weight mixes the integers of every tap of its kernel
    with torch.no_grad():
        conv.decoder.copy_(mixed)
    expected = (integers.reshape(30, 9) @ mixed).reshape(5, 6, 3, 3)
    assert torch.allclose(conv.weight(integers), expected)
    assert expected[0, 0, 0, 1] == pytest.approx(float(integers[0, 0, 0, 0] * 0.5 + integers[0, 0, 0, 1] * mixed[1, 1]), abs=1e-6)


def test_the_forward_pass_uses_rounded_proxies_and_passes_gradients_straight_through():
    layer = QuantizedLinear(3, 2)
    x = torch.randn(4, 3)
    expected = torch.nn.functional.linear(x, torch.round(layer.proxy) * layer.decoder, layer.bias)
    assert torch.equal(layer(x), expected)
    layer(x).sum().backward()
    assert torch.allclose(layer.proxy.grad, (x.sum(0)[None] * layer.decoder).expand(2, 3))


def test_bit_estimator_is_lilnetx_density():
    torch.manual_seed(0)
    estimator = BitEstimator(9)
    assert len(estimator.layers) == 4 and estimator.layers[-1].a is None
    assert all(layer.a is not None for layer in estimator.layers[:3])
    assert all(float(p.detach().std()) < 0.05 for p in estimator.parameters())  # N(0, 0.01) start
    x = torch.randint(-4, 5, (50, 9)).float()
    cdf = lambda v: estimator.layers(v)  # noqa: E731
    expected = -torch.log2(cdf(x + 0.5) - cdf(x - 0.5)).sum()
    assert torch.allclose(estimator.bits(x), expected)
    # A CDF: increasing in x, from 0 to 1.
    grid = torch.linspace(-50, 50, 101)[:, None].expand(101, 9)
    values = cdf(grid)
    assert (values[1:] >= values[:-1]).all() and values[0].max() < 0.05 and values[-1].min() > 0.95


def test_network_shapes_and_weight_count():
    arch = dict(patch=8, group_size=3, channels=4, stages=2, hidden=8, frequencies=3, siren=1)
    network = GroupNetwork(**arch)
    coords = torch.rand(5, 2) * 2 - 1
    out = network(coords)
    assert out.shape == (5, 3, 3, 8, 8) and out.min() >= 0 and out.max() <= 1
    assert network(coords, frames=2).shape == (5, 2, 3, 8, 8)
    assert sum(layer.proxy.numel() for layer in network.quantized_layers()) == network_weight_count(arch)
    assert fourier_features(torch.tensor([[0.5, -0.25]]), 3).shape == (1, 2 + 4 * 3)
    # [x, y, sin(pi x), sin(2 pi x), sin(pi y), sin(2 pi y), cos(...)]: frequencies 2**k pi.
    features = fourier_features(torch.tensor([[0.5, 0.25]]), 2)[0]
    angles = torch.tensor([0.5, 1.0, 0.25, 0.5]) * math.pi
    assert torch.allclose(features, torch.cat([torch.tensor([0.5, 0.25]), torch.sin(angles), torch.cos(angles)]), atol=1e-6)


def test_tiles_round_trip_frames_of_any_size():
    frames = np.random.default_rng(0).integers(0, 256, (3, 13, 21, 3), dtype=np.uint8)
    rows, cols, coords = tile_grid(13, 21, 8)
    assert (rows, cols, coords.shape) == (2, 3, (6, 2))
    assert coords.min() > -1 and coords.max() < 1
    tiles = frames_to_tiles(frames, 8)
    assert tiles.shape == (6, 3, 3, 8, 8)
    assert np.array_equal(tiles_to_frames(tiles, rows, cols, 13, 21), frames)


def test_weight_changes_round_trip_exactly():
    rng = np.random.default_rng(1)
    shapes = [(5, 4, 3, 3), (7, 3), (2,)]
    previous = [torch.from_numpy(rng.integers(-9, 9, s).astype(np.int32)) for s in shapes]
    current = [p + torch.from_numpy(rng.integers(-1, 2, p.shape).astype(np.int32)) * (rng.random(p.shape) < 0.3) for p in previous]
    current[2] = previous[2].clone()  # an unchanged tensor: one value, nothing coded
    floats = [torch.randn(9, 9), torch.randn(4)]
    coder = get_coder("codeclab")
    for reference in (previous, None):
        streams = weights.encode_group(current, reference, floats, coder)
        integers, side = weights.decode_group(streams, shapes, [(9, 9), (4,)], reference, coder)
        assert all(torch.equal(a, b.to(torch.int32)) for a, b in zip(integers, current))
        assert all(torch.equal(a, b.half().float()) for a, b in zip(side, floats))
    assert len(streams[0]) == 2 * (81 + 4)
    # Side information equal to the previous group's is sent as an empty stream and reused.
    unchanged = weights.encode_group(current, previous, floats, coder, previous_floats=[t.half().float() for t in floats])
    assert unchanged[0] == b""
    _, side = weights.decode_group(unchanged, shapes, [(9, 9), (4,)], previous, coder, previous_floats=floats)
    assert side is floats


def test_hostile_weight_streams_are_one_line_errors():
    coder = get_coder("codeclab")
    ints = [torch.arange(-5, 5, dtype=torch.int32).reshape(2, 5)]
    side, tables, symbols = weights.encode_group(ints, None, [torch.ones(3)], coder)
    decode = lambda s: weights.decode_group(s, [(2, 5)], [(3,)], None, coder)  # noqa: E731
    with pytest.raises(CodecLabError, match="side information"):
        decode([side[:-2], tables, symbols])
    with pytest.raises(CodecLabError, match="0 bytes of side information"):  # "unchanged" needs a previous group
        decode([b"", tables, symbols])
    with pytest.raises(CodecLabError, match="not finite"):
        decode([np.array([np.inf] * 3, "<f2").tobytes(), tables, symbols])
    huge = weights.encode_varint(0) + weights.encode_varint(weights.MAX_CATEGORIES + 1)
    with pytest.raises(CodecLabError, match="values from"):
        decode([side, huge, symbols])
    with pytest.raises(CodecLabError, match="histogram"):
        decode([side, tables[:2] + weights.encode_varint(3) + tables[3:], symbols])
    with pytest.raises(CodecLabError, match="past their weights"):
        decode([side, tables + b"\x00", symbols])
    with pytest.raises(CodecLabError):
        decode([side, tables, symbols[:3]])
    with pytest.raises(CodecLabError, match="streams"):
        decode([side, tables])


def test_fitting_lowers_the_loss_and_stops_at_the_target_or_the_deadline():
    torch.manual_seed(0)
    config = NirvanaConfig(**TINY)
    clip = moving_clip(2)
    targets = frames_to_tiles(np.stack(clip.frames), 8)
    _, _, coords = tile_grid(20, 28, 8)
    network = GroupNetwork(**config.architecture())
    before = nirvana.psnr_of(torch.nn.functional.mse_loss(render_group(network, coords, 2), targets).item())
    generator = torch.Generator().manual_seed(0)
    fit = fit_group(network, targets, coords, None, config, 1e-3, 60, None, math.inf, generator)
    assert fit.steps == 60 and fit.psnr > before + 3
    # Later groups stop once they reach the target (here already reached: no step), or at the deadline.
    assert fit_group(network, targets, coords, network.integers(), config, 1e-3, 60, fit.psnr - 1, math.inf, generator).steps == 0
    assert fit_group(network, targets, coords, None, config, 1e-3, 60, None, 0.0, generator).steps == 0


def test_later_groups_learn_slower_by_the_group_factor(monkeypatch):
    rates = []
    original = torch.optim.Adam

    def recording(groups, lr=None):
        rates.append(sorted(g["lr"] for g in groups) if isinstance(groups[0], dict) else lr)
        return original(groups, lr=lr or 1e-3)

    monkeypatch.setattr(torch.optim, "Adam", recording)
    config = NirvanaConfig(**TINY)
    encode_implicit(moving_clip(3), config, 1)
    assert rates[0] == [config.side_lr, config.lr] and rates[1] == config.prob_lr
    factor = config.group_lr_factor
    assert rates[2] == pytest.approx([config.side_lr * factor, config.lr * factor])


def test_clip_round_trips_and_later_groups_code_changes(tmp_path):
    config = NirvanaConfig(**{**TINY, "first_steps": 40})
    clip = moving_clip(5)
    encoded = encode_implicit(clip, config, 2, seed=3)
    header, _ = unpack_implicit(encoded.data)
    assert (header.width, header.height, header.frames, len(header.groups)) == (28, 20, 5, 3)
    assert header.architecture == config.architecture()
    decoded = decode_implicit(encoded.data).clip()
    assert len(decoded.frames) == 5 and decoded.frames[0].shape == (20, 28, 3)
    # Decoding frames 3:5 decodes groups 0-2's weights and renders group 1's and 2's frames only.
    assert all(np.array_equal(a, b) for a, b in zip(decode_implicit(encoded.data, 3, 5).clip().frames, decoded.frames[3:]))
    # The decoded frames are as good as the encoder measured its fits (on the padded tiles).
    mse = np.mean([(a.astype(float) - b.astype(float)) ** 2 for a, b in zip(clip.frames, decoded.frames)])
    assert 10 * math.log10(255**2 / mse) == pytest.approx(np.mean([f.psnr for f in encoded.fits]), abs=1.5)


def test_a_static_clip_costs_little_after_its_first_group():
    config = NirvanaConfig(**{**TINY, "first_steps": 30})
    encoded = encode_implicit(moving_clip(6, static=True), config, 1)
    header, _ = unpack_implicit(encoded.data)
    first, *later = [lengths for lengths, _ in header.groups]
    # Group 0's PSNR is met at once: no step, no integer change (each tensor: one value, two varints).
    assert [fit.steps for fit in encoded.fits[1:]] == [0, 0]
    tensors = len(GroupNetwork(**config.architecture()).quantized_layers())
    assert all(lengths[0] == 0 and lengths[1] == 2 * tensors and lengths[2] <= 16 for lengths in later)  # no side information either
    assert first[1] + first[2] > 10 * (later[0][1] + later[0][2])


def _file(tmp_path):
    encoded = encode_implicit(moving_clip(3), NirvanaConfig(**TINY), 0)
    return encoded.data


def _rewrite_header(data: bytes, edit) -> bytes:
    """Apply ``edit`` to the header's bytes and recompute the header CRC."""
    header, offset = unpack_implicit(data)
    head = bytearray(data[: offset - 4])
    edit(head)
    return bytes(head) + struct.pack("<I", zlib.crc32(bytes(head))) + data[offset:]


def test_hostile_implicit_files_are_one_line_errors(tmp_path):
    data = _file(tmp_path)
    with pytest.raises(CodecLabError, match="truncated"):
        decode_implicit(data[:-5])
    with pytest.raises(CodecLabError, match="header checksum"):
        unpack_implicit(data[:6] + bytes([data[6] ^ 1]) + data[7:])
    flipped = bytearray(data)
    flipped[-3] ^= 0x10
    with pytest.raises(CodecLabError, match="group 1 checksum"):
        list(decode_implicit(bytes(flipped)).frames)
    with pytest.raises(CodecLabError, match="version"):
        unpack_implicit(data[:4] + b"\x09" + data[5:])
    with pytest.raises(CodecLabError, match="bad magic"):
        unpack_implicit(b"CLAV" + data[4:])

    def patch_field(value):  # the architecture's first varint (patch 8) becomes value
        return lambda head: head.__setitem__(slice(5, 6), bytes([value]))

    with pytest.raises(CodecLabError, match="patch must be"):
        unpack_implicit(_rewrite_header(data, patch_field(1)))
    with pytest.raises(CodecLabError, match="multiple"):
        unpack_implicit(_rewrite_header(data, patch_field(7)))
    with pytest.raises(CodecLabError, match="frames"):
        decode_implicit(data, 3, 9)


def test_architecture_limits_refuse_huge_networks():
    with pytest.raises(CodecLabError, match="weights per group"):
        architecture.check_architecture(dict(patch=256, group_size=64, channels=256, stages=6, hidden=1024, frequencies=16, siren=1))
    with pytest.raises(CodecLabError, match="unknown key"):
        NirvanaConfig.from_dict({"patch": 8, "widht": 3})
    with pytest.raises(CodecLabError, match="rate_weights"):
        NirvanaConfig(rate_weights=())


def test_cli_encodes_decodes_and_describes_a_clip(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"_target_": "codeclab.implicit.nirvana.NirvanaConfig", **TINY}))
    source = tmp_path / "clip.y4m"
    write_video(source, moving_clip(3))
    encoded, decoded = tmp_path / "clip.clnv", tmp_path / "out.y4m"
    proc = run_main("encode", source, "-m", config, "-o", encoded, "--quality", "1", "--time-budget", "60", "--quiet", check=True)
    assert "NIRVANA, 2 groups, level 2 of 3" in proc.stdout
    run_main("decode", encoded, "-o", decoded, "--quiet", check=True)
    assert decoded.read_bytes().startswith(b"YUV4MPEG2 W28 H20")
    info = run_main("info", encoded, check=True).stdout
    assert '"codec": "nirvana"' in info and '"frame_count": 3' in info
    for args, message in (
        (("decode", encoded, "-o", tmp_path / "x.y4m", "-m", config), "without -m"),
        (("decode", encoded, "-o", tmp_path / "x.y4m", "--postfilter", ROOT / "models/postfilters/rbqe_jpeg_cpu.safetensors"),
         "--postfilter is for images"),
        (("encode", source, "-m", config, "-o", tmp_path / "y.clnv", "--intra-period", "4"), "--intra-period"),
        (("encode", source, "-m", config, "-o", tmp_path / "y.clnv", "--level", "7"), "rate level 7"),
        (("encode", source, "-m", ROOT / "configs/codec/stem.yaml", "-o", tmp_path / "y.clnv"), "not a NIRVANA config"),
    ):
        proc = run_main(*args)
        assert proc.returncode == 1 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert not (tmp_path / "y.clnv").exists() and not (tmp_path / "x.y4m").exists()


def test_container_fields_match_the_docstring(tmp_path):
    data = _file(tmp_path)
    assert data[:5] == b"CLNV\x01" and implicit_container.IMPLICIT_FORMAT_VERSION == 1
    assert list(data[5:12]) == [8, 2, 4, 1, 8, 2, 1]  # patch, group size, channels, stages, hidden, frequencies, siren
    assert list(data[12:15]) == [28, 20, 3]
    assert Path(implicit_container.__file__).read_text().count("CLNV") >= 1


def test_the_time_budget_is_shared_by_the_groups_step_allotments(monkeypatch):
    deadlines, real_fit = [], video_file.fit_group
    monkeypatch.setattr(video_file.time, "monotonic", lambda: 100.0)  # no time passes: each share is of the whole budget

    def recording(*args, **kwargs):
        deadlines.append(args[8] - 100.0)
        return real_fit(*args[:8], math.inf, *args[9:], **kwargs)

    monkeypatch.setattr(video_file, "fit_group", recording)
    encode_implicit(moving_clip(5), NirvanaConfig(**TINY), 0, time_budget=14.0)
    # Allotments 6, 4, 4 steps: the first group gets 6/14 of what is left, the next 4/8, the last all.
    assert deadlines == pytest.approx([6.0, 7.0, 14.0])
