"""Integer entropy-parameter networks: constants, exactness (fake-quantised == float64 == int64),
independence from layout, threads and oneDNN, conversion and the codecs built on them."""

import math

import pytest
import torch
from torch import nn

from codeclab.codecs import bmshj2018_hyperprior, build_codec, mbt2018_mean
from codeclab.codecs.base import coding_transforms, with_arithmetic
from codeclab.coding import get_coder
from codeclab.entropy_models import integer
from codeclab.entropy_models.acgc import ACGCEntropyModel
from codeclab.entropy_models.channelwise import ChannelwiseEntropyModel
from codeclab.entropy_models.checkerboard import CheckerboardEntropyModel
from codeclab.entropy_models.integer import (
    IntegerConv2d, IntegerConvTranspose2d, IntegerHalfTanh, IntegerLeakyReLU, IntegerReLU, make_integer,
)

CODER = get_coder()


def test_constants():
    assert integer.FRACTION_BITS == 10
    assert integer.ACTIVATION_MAX == 2**24 - 1  # exact in float32
    assert integer.MAX_WEIGHT_BITS == 15  # int16 storage
    assert integer.LEAKY_SLOPE_SHIFT == 12
    assert integer.leaky_slope_numerator(0.01) == 41 and integer.leaky_slope_numerator(0.2) == 819
    assert IntegerLeakyReLU().numerator == 41
    assert integer.integer_layer(torch.nn.LeakyReLU(0.2)).numerator == 819
    assert integer.TANH_RANGE == 8 and 0.5 * math.tanh(8) * 2**10 > 511.5


def _paper_size_layers():
    """Every integer layer of the hyperprior, checkerboard and ChARM models at N, M = 192, 320."""
    with torch.device("meta"):
        models = [
            mbt2018_mean(192, 320, arithmetic="integer").entropy_model,
            CheckerboardEntropyModel(192, 320, arithmetic="integer"),
            ChannelwiseEntropyModel(192, 320, arithmetic="integer"),
        ]
    return [layer for model in models for _, layer in integer.integer_convolutions(model)]


def test_accumulators_stay_below_2_to_the_53_at_paper_sizes():
    layers = _paper_size_layers()
    assert len(layers) > 50
    for layer in layers:
        fan_in = layer.weight.shape.numel() // layer.weight.shape[layer.output_dim]
        bound = 2 ** layer.weight_bits() * (integer.ACTIVATION_MAX + 1) * fan_in
        assert bound + 2**integer.ACCUMULATOR_BITS + 2 ** (integer.MAX_SHIFT - 1) < 2**53
        assert layer.weight_bits() >= 13  # 5x5 ChARM slice networks over 480 channels: 13 bits


def test_fan_in_too_wide_is_refused():
    layer = make_integer(nn.Sequential(nn.Conv2d(2**16, 1, 3)))[0]
    with pytest.raises(ValueError, match="too wide"):
        layer.weight_bits()


def test_half_tanh_table_has_no_entry_near_a_rounding_tie():
    n = torch.arange(-8 * 1024, 8 * 1024 + 1, dtype=torch.float64)
    scaled = 0.5 * torch.tanh(n / 1024) * 1024 + 0.5
    assert (scaled - torch.round(scaled)).abs().min() > 1e-7
    table = integer.half_tanh_table()
    assert table[0] == -512 and table[-1] == 512 and table[8 * 1024] == 0


def _network():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.ConvTranspose2d(8, 12, 5, stride=2, padding=2, output_padding=1), nn.LeakyReLU(),
        nn.Conv2d(12, 12, 3, padding=1), nn.ReLU(),
        nn.Conv2d(12, 6, 1), integer.HalfTanh(),
    )
    return make_integer(net)


def test_make_integer_swaps_layers_and_keeps_parameter_names():
    float_names = list(nn.Sequential(nn.ConvTranspose2d(8, 12, 5), nn.LeakyReLU()).state_dict())
    net = _network()
    assert [type(m) for m in net] == [IntegerConvTranspose2d, IntegerLeakyReLU, IntegerConv2d, IntegerReLU,
                                      IntegerConv2d, IntegerHalfTanh]
    assert list(net[:2].state_dict()) == float_names
    with pytest.raises(ValueError, match="no integer counterpart"):
        make_integer(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="slope"):
        make_integer(nn.Sequential(nn.LeakyReLU(1.5)))


def test_fake_quantised_float64_int64_paths_agree_bit_for_bit(monkeypatch):
    net = _network()
    x = torch.randn(2, 8, 5, 7) * 6
    net.eval()
    monkeypatch.setenv("CODECLAB_INTEGER_BACKEND", "float64")
    exact = net(x)
    monkeypatch.setenv("CODECLAB_INTEGER_BACKEND", "int64")
    assert torch.equal(net(x), exact)
    net.train().double()  # quantisation-aware path, in float64: the same dyadic arithmetic
    assert torch.equal(net(x.double()).float(), exact)
    net.float()
    assert (net(x) - exact).abs().max() <= 2 * 2**-10  # float32 training path: within a grid step or two
    assert torch.equal(exact, torch.round(exact * 1024) / 1024)  # outputs on the fixed-point grid


def test_exact_outputs_do_not_depend_on_layout_threads_or_onednn():
    net = _network().eval()
    x = torch.randn(1, 8, 9, 11) * 3
    reference = net(x)
    net_cl = net.to(memory_format=torch.channels_last)
    assert torch.equal(net_cl(x.to(memory_format=torch.channels_last)), reference)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with torch.backends.mkldnn.flags(enabled=False):
            assert torch.equal(net(x), reference)
    finally:
        torch.set_num_threads(threads)


def test_powers_of_two_are_built_exactly():
    exponents = torch.arange(-80, 80)
    assert torch.equal(integer.pow2(exponents), torch.tensor([math.ldexp(1.0, int(e)) for e in exponents], dtype=torch.float64))


def test_exact_outputs_do_not_depend_on_the_math_librarys_exp2(monkeypatch):
    """CUDA's exp2 may be an ulp off: an H200 decoding a CPU file once took another rounding shift
    (one value in 442,368) and the stream desynchronised. The layers must not call it."""
    net = _network().eval()
    x = torch.randn(1, 8, 9, 11) * 3
    reference = net(x)
    real_pow, real_exp2 = torch.pow, torch.exp2
    monkeypatch.setattr(torch, "pow", lambda *a, **k: real_pow(*a, **k) * (1 - 2**-12))
    monkeypatch.setattr(torch, "exp2", lambda *a, **k: real_exp2(*a, **k) * (1 - 2**-12))
    fresh = _network().eval()
    fresh.load_state_dict(net.state_dict())  # integers derived again under the inexact library
    assert torch.equal(fresh(x), reference)


def _int8_network():
    net = make_integer(nn.Sequential(nn.ConvTranspose2d(8, 12, 5, 2, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(12, 6, 1)), bits=8)
    integer.calibrate_int8_inputs(net.train(), lambda: net(torch.randn(4, 8, 4, 4)))
    return net


@pytest.mark.parametrize("build", [_network, _int8_network], ids=["15-bit", "8-bit"])
def test_quantisation_aware_training_passes_gradients_and_lowers_a_loss(build):
    torch.manual_seed(0)
    net = build().train()
    x, target = torch.randn(4, 8, 4, 4), torch.rand(4, 6, 8, 8) - 0.5
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = (net(x) - target).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize("build", [
    lambda a: bmshj2018_hyperprior(16, 24, arithmetic=a),
    lambda a: mbt2018_mean(16, 24, arithmetic=a),
    lambda a: mbt2018_mean(16, 24, rate_levels=4, scale_table_levels=128, arithmetic=a),
    lambda a: build_codec("composed", {"transform": {"name": "cnn", "N": 16, "M": 24},
                                       "entropy": {"name": "checkerboard", "N": 16, "M": 24, "arithmetic": a}}),
    lambda a: build_codec("composed", {"transform": {"name": "cnn", "N": 16, "M": 24},
                                       "entropy": {"name": "charm", "N": 16, "M": 24, "num_slices": 4, "arithmetic": a}}),
], ids=["scale-hyperprior", "mean-scale", "variable-rate", "checkerboard", "charm"])
def test_integer_codecs_decode_their_latents_exactly(build):
    torch.manual_seed(0)
    codec = with_arithmetic(build("float"), "integer").eval()
    assert codec.entropy_model.portable and codec.entropy_model.arithmetic == "integer"
    assert any(isinstance(m, integer.IntegerConvMixin) for m in codec.entropy_model.modules())
    level = 3 if codec.rate_levels else None
    x = torch.rand(1, 3, 64, 128)
    compressed = codec.compress(x, CODER, level)
    decoded = codec.decompress_y(compressed.strings, compressed.size, CODER, level)
    assert torch.equal(decoded, codec.quantize(x, level))
    # The same weights: a float model converts by loading its state_dict.
    assert set(codec.state_dict()) == set(build("float").state_dict())


def test_acgc_has_no_integer_path_and_is_not_portable():
    with pytest.raises(ValueError, match="no integer path"):
        ACGCEntropyModel(16, 20, num_slices=2, arithmetic="integer")
    assert not ACGCEntropyModel(16, 20, num_slices=2).portable
    assert not mbt2018_mean(16, 24).entropy_model.portable
    with pytest.raises(ValueError, match="arithmetic must be one of"):
        mbt2018_mean(16, 24, arithmetic="fixed")


def test_coding_transforms_are_fast_for_integer_models_only(monkeypatch):
    monkeypatch.delenv("CODECLAB_TRANSFORMS", raising=False)
    monkeypatch.delenv("CODECLAB_LAYOUT", raising=False)
    assert coding_transforms(mbt2018_mean(16, 24)) == (None, False)
    dtype, channels_last = coding_transforms(mbt2018_mean(16, 24, arithmetic="integer"))
    assert channels_last and dtype in (None, torch.bfloat16)
    assert coding_transforms(mbt2018_mean(16, 24, arithmetic="int8")) == (dtype, channels_last)
    monkeypatch.setenv("CODECLAB_TRANSFORMS", "fp32")
    assert coding_transforms(mbt2018_mean(16, 24, arithmetic="integer"))[0] is None
    monkeypatch.setenv("CODECLAB_LAYOUT", "sideways")
    with pytest.raises(ValueError, match="CODECLAB_LAYOUT"):
        coding_transforms(mbt2018_mean(16, 24))


def test_cached_integers_follow_in_place_weight_updates():
    net = _network().eval()
    x = torch.randn(1, 8, 5, 5)
    before = net(x)
    with torch.no_grad():
        net[2].weight.mul_(-1)  # as an optimiser step or load_state_dict would, in place
    after = net(x)
    assert not torch.equal(before, after)
    for layer in net:
        layer.__dict__.pop("_integer_cache", None)
    assert torch.equal(net(x), after)
    assert make_integer(net) is net and [type(m) for m in net] == [type(m) for m in _network()]  # idempotent


def test_checkerboard_passes_run_exact_pointwise_networks_on_their_half_only():
    torch.manual_seed(0)
    network = make_integer(nn.Sequential(nn.Conv2d(8, 12, 1), nn.LeakyReLU(), nn.Conv2d(12, 6, 1))).eval()
    assert integer.exact_pointwise(network)
    x = torch.randn(2, 8, 5, 7) * 40
    mask = (torch.arange(5)[:, None] + torch.arange(7)) % 2 == 1
    seen = []
    network[0].register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    picked = integer.at_positions(network, x, mask)
    assert seen == [(2, 8, int(mask.sum()), 1)]  # 17 of 35 positions evaluated
    full = network(x)
    assert torch.equal(picked[..., mask], full[..., mask]) and not picked[..., ~mask].any()
    # Training mode, wider kernels and float layers keep the whole map (their summation order).
    assert not integer.exact_pointwise(network.train())
    assert not integer.exact_pointwise(make_integer(nn.Sequential(nn.Conv2d(8, 6, 3, padding=1))).eval())
    float_network = nn.Sequential(nn.Conv2d(8, 6, 1)).eval()
    assert not integer.exact_pointwise(float_network)
    assert torch.equal(integer.at_positions(float_network, x, mask), float_network(x))


# 8-bit integer layers (arithmetic="int8")

def _int8_layer(float_layer, exponent):
    torch.manual_seed(0)
    layer = integer.integer_layer(float_layer, bits=8)
    layer.input_exponent.fill_(exponent)
    return layer.eval()


INT8_LAYERS = {
    "conv5x5": lambda: nn.Conv2d(24, 16, 5, padding=2),  # STEM's temporal prior and checkerboard context
    "conv1x1": lambda: nn.Conv2d(40, 24, 1),  # entropy parameters
    "conv5x5-unpadded": lambda: nn.Conv2d(12, 8, 5),  # the masked context (padded outside the layer)
    "deconv5x5/2": lambda: nn.ConvTranspose2d(16, 12, 5, stride=2, padding=2, output_padding=1),  # hyper-synthesis
    "conv3x3/2": lambda: nn.Conv2d(12, 8, 3, stride=2, padding=1),  # no int8 kernel: float64
}


@pytest.mark.parametrize("kernel", integer.INT8_KERNELS)  # CodecLab's AVX2 kernel and torch._int_mm
@pytest.mark.parametrize("digits", [1, 2])  # 8-bit inputs, or 15-bit ones as two int8 digits
@pytest.mark.parametrize("exponent", [-2, 3, 12])  # 12: t = s + a - F > 0; -2: t <= 0 (left shifts)
@pytest.mark.parametrize("kind", list(INT8_LAYERS))
def test_int8_kernels_float64_int64_and_training_paths_agree_bit_for_bit(kind, exponent, digits, kernel, monkeypatch):
    monkeypatch.setattr(integer, "int8_kernel", lambda: kernel)
    layer = _int8_layer(INT8_LAYERS[kind](), exponent)
    if digits == 2:
        integer.wide_inputs(layer)
    x = torch.randn(2, layer.weight.shape[1 - layer.output_dim], 9, 11) * 2.0 ** (6 + 7 * (digits - 1) - exponent)
    assert layer.input_integers(x).abs().max() == layer.input_limit == (127 if digits == 1 else 16383)  # some clamp
    exact = layer(x)
    kernel_applies = layer._int8_kernel_applies()
    assert kernel_applies == (kind != "conv3x3/2")
    monkeypatch.setattr(layer, "_int8_kernel_applies", lambda: False)  # float64 sums
    assert torch.equal(layer(x), exact)
    monkeypatch.setenv("CODECLAB_INTEGER_BACKEND", "int64")
    assert torch.equal(layer(x), exact)
    layer.train().double()  # quantisation-aware path in float64: the same dyadic arithmetic
    assert torch.equal(layer(x.double()).float(), exact)
    assert torch.equal(exact, torch.round(exact * 1024) / 1024)


def test_int8_layers_stay_in_8_bits_and_their_sums_in_int32():
    layer = _int8_layer(nn.Conv2d(192, 256, 5, padding=2), 3)
    w_int, shift = layer.integer_weight()
    assert layer.weight_bits() == 7 and integer.INT8_LIMIT == 127 and w_int.abs().max() <= 127
    assert torch.all((w_int.abs().amax(dim=(1, 2, 3)) >= 64))  # the per-channel shift uses the 7 bits
    q = layer.input_integers(torch.randn(1, 192, 4, 4) * 100)
    assert q.abs().max() == 127 and torch.equal(q, q.round())
    # STEM's widest fan-in (320 x 5 x 5) and the bound of the int32 accumulator (two-digit inputs: |hi| <= 128):
    assert 128 * 127 * 320 * 25 < 2**31 - 1
    with pytest.raises(ValueError, match="too wide for an exact 8-bit layer"):
        integer.integer_layer(nn.Conv2d(2**17 + 2**12, 1, 1), bits=8)  # 135,168 > (2^31 - 1) / (128 * 127)


def test_int8_inputs_are_calibrated_for_the_least_squared_error_and_required():
    net = make_integer(nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(6, 2, 1)), bits=8)
    assert [type(m) for m in net] == [integer.Int8Conv2d, IntegerLeakyReLU, integer.Int8Conv2d]
    x = torch.randn(8, 4, 6, 6) * 5  # peak about 20: a = floor(log2(127 / peak)) = 2 clamps nothing
    with pytest.raises(ValueError, match="calibrated"):
        net.eval()(x)
    net.train()
    assert integer.calibrate_int8_inputs(net, lambda: net(x)) == 2
    exponent = int(net[0].input_exponent)
    def grid_error(a):
        return float((x.double() - torch.floor(x.double() * 2.0**a + 0.5).clamp(-127, 127) * 2.0**-a).square().mean())

    assert grid_error(exponent) < min(grid_error(exponent - 1), grid_error(exponent + 1))
    assert integer.calibrate_int8_inputs(net, lambda: net(x)) == 0  # calibrated layers keep their grids
    assert set(net.state_dict()) == {"0.weight", "0.bias", "0.input_exponent", "2.weight", "2.bias", "2.input_exponent"}


@pytest.mark.parametrize("entropy", ["hyperprior", "checkerboard"])
def test_int8_codecs_decode_their_latents_exactly(entropy):
    torch.manual_seed(0)
    codec = build_codec("composed", {"transform": {"name": "cnn", "N": 16, "M": 24},
                                     "entropy": {"name": entropy, "N": 16, "M": 24, "arithmetic": "int8"}})
    layers = [m for m in codec.modules() if isinstance(m, integer.Int8ConvMixin)]
    assert codec.entropy_model.portable and len(layers) == (3 if entropy == "hyperprior" else 7)
    # The checkerboard context reads the decoded latent: 15-bit inputs; everything else 8-bit.
    assert [m.input_limit for m in layers].count(16383) == (entropy == "checkerboard")
    x = torch.rand(2, 3, 64, 64)
    codec.train()
    assert integer.calibrate_int8_inputs(codec, lambda: codec(x)) == len(layers)
    codec.eval()
    compressed = codec.compress(x[:1], CODER)
    assert torch.equal(codec.decompress_y(compressed.strings, compressed.size, CODER), codec.quantize(x[:1]))
