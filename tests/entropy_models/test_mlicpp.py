"""MLIC++ (codeclab.entropy_models.mlicpp, codeclab.transforms.mlicpp) against the released code
(JiangWeibeta/MLIC, MLIC++/): parameter names and shapes, the paper's parameter count, exact
coding, the checkerboard parity, the attention formulas, the passes per slice, and training."""

import math

import compressai.entropy_models as cem
import pytest
import torch
import torch.nn.functional as F

from codeclab.codecs import from_mlicpp, load_mlicpp_state_dict, mlicpp, to_mlicpp
from codeclab.coding import get_coder
from codeclab.entropy_models.base import checkerboard_masks
from codeclab.entropy_models.mlicpp import LocalContext, linear_attention
from tests.entropy_models.test_reference_wiring import MaskRecordingStep

CODER = get_coder()

TINY = dict(N=16, M=32, num_slices=4, parameter_hidden=(32, 24, 16), channel_hidden=(16, 16), lrp_hidden=(16, 16))


def tiny_codec(seed: int = 0):
    torch.manual_seed(seed)
    return mlicpp(**TINY)


# --- The released model's state_dict, re-declared from MLIC++/models/mlicpp.py and the modules it
# builds (analysis.py, synthesis.py, context.py, entropy.py, quantization.py, modules/layers/res_blk.py),
# as (name -> shape). Written from reading those files, independently of the implementation.

def _conv(p, cin, cout, k, groups=1):
    return {p + "weight": (cout, cin // groups, k, k), p + "bias": (cout,)}


def _linear(p, cin, cout):
    return {p + "weight": (cout, cin), p + "bias": (cout,)}


def _norm(p, c):
    return {p + "weight": (c,), p + "bias": (c,)}


def _gdn(p, c):
    return {p + "beta": (c,), p + "gamma": (c, c), **{f"{p}{n}_reparam.{b}": (1,) for n in ("beta", "gamma")
                                                      for b in ("pedestal", "lower_bound.bound")}}


def _res_stride(p, cin, cout):  # ResidualBlockWithStride: conv1 (stride), act, conv2, gdn, 1x1 skip
    return {**_conv(p + "conv1.", cin, cout, 3), **_conv(p + "conv2.", cout, cout, 3), **_gdn(p + "gdn.", cout),
            **_conv(p + "skip.", cin, cout, 1)}


def _res(p, cin, cout):  # ResidualBlock: conv1, act, conv2, act, 1x1 skip when the width changes
    skip = _conv(p + "skip.", cin, cout, 1) if cin != cout else {}
    return {**_conv(p + "conv1.", cin, cout, 3), **_conv(p + "conv2.", cout, cout, 3), **skip}


def _res_up(p, cin, cout):  # ResidualBlockUpsample: subpel_conv, act, conv, igdn, subpel upsample
    return {**_conv(p + "subpel_conv.0.", cin, 4 * cout, 3), **_conv(p + "conv.", cout, cout, 3),
            **_gdn(p + "igdn.", cout), **_conv(p + "upsample.0.", cin, 4 * cout, 3)}


def _linear_attention(p, dim, out, reprojection, skip):  # LinearGlobalInter/IntraContext
    d = {}
    for name in ("keys", "queries", "values"):
        d |= _conv(f"{p}{name}.0.", dim, dim, 1) | _conv(f"{p}{name}.1.", dim, dim, 3, groups=dim)
    d |= _conv(p + "reprojection.", dim, reprojection, 5)
    d |= _conv(p + "mlp.0.", reprojection, 2 * out, 1) | _conv(p + "mlp.2.", 2 * out, 2 * out, 3, groups=2 * out)
    d |= _conv(p + "mlp.4.", 2 * out, out, 1)
    return d | (_conv(p + "skip.", reprojection, out, 1) if skip else {})


def released_state_shapes(N=192, M=320, S=10):
    s = M // S
    d = {}
    a = "g_a.analysis_transform."
    for j in (0, 2, 4):
        d |= _res_stride(f"{a}{j}.", 3 if j == 0 else N, N) | _res(f"{a}{j + 1}.", N, N)
    d |= _conv(a + "6.", N, M, 3)
    g = "g_s.synthesis_transform."
    d |= _res(g + "0.", M, M) | _res_up(g + "1.", M, N)
    for j in (2, 4):
        d |= _res(f"{g}{j}.", N, N) | _res_up(f"{g}{j + 1}.", N, N)
    d |= _res(g + "6.", N, N) | _conv(g + "7.0.", N, 12, 3)
    for j, cin in zip((0, 2, 4, 6, 8), (M, N, N, N, N)):
        d |= _conv(f"h_a.reduction.{j}.", cin, N, 3)
    w = 3 * M // 2
    h = "h_s.increase."
    d |= _conv(h + "0.", N, M, 3) | _conv(h + "2.0.", M, 4 * M, 3) | _conv(h + "4.", M, w, 3)
    d |= _conv(h + "6.0.", w, 4 * w, 3) | _conv(h + "8.", w, 2 * M, 3)
    # CompressionModel(N)'s entropy bottleneck and GaussianConditional(None): compressai's own.
    d |= {"entropy_bottleneck." + k: tuple(v.shape) for k, v in cem.EntropyBottleneck(N).state_dict().items()}
    d |= {"gaussian_conditional." + k: tuple(v.shape) for k, v in cem.GaussianConditional(None).state_dict().items()}
    for i in range(S):
        p = f"local_context.{i}."  # LocalContext(dim=s): window 5, 2 heads, mlp_ratio 2
        d |= _linear(p + "qkv_proj.", s, 3 * s) | {p + "relative_position_table": (81, 2)}
        d |= _linear(p + "proj.", 2 * s, 2 * s) | _linear(p + "mlp.fc1.", 2 * s, 4 * s) | _linear(p + "mlp.fc2.", 4 * s, 2 * s)
        d |= _norm(p + "norm1.", s) | _norm(p + "norm2.", 2 * s) | {p + "relative_position_index": (25, 25)}
        d |= _conv(p + "fusion.", s, 2 * s, 5)
        if i:
            c = f"channel_context.{i}.fushion."  # ChannelContext(s i, s)
            d |= _conv(c + "0.", s * i, 192, 3) | _conv(c + "2.", 192, 128, 3) | _conv(c + "4.", 128, 4 * s, 3)
            d |= _linear_attention(f"global_inter_context.{i}.", s * i, 2 * s, 3 * s, skip=True)
            d |= _linear_attention(f"global_intra_context.{i}.", s, 2 * s, 2 * s, skip=False)
        for name, cin in (("anchor", 2 * M + (6 * s if i else 0)), ("nonanchor", 2 * M + (10 * s if i else 2 * s))):
            for j, (fan_in, fan_out) in enumerate([(cin, 320), (320, 256), (256, 128), (128, 2 * s)]):
                d |= _conv(f"entropy_parameters_{name}.{i}.fusion.{2 * j}.", fan_in, fan_out, 1)
            for j, (fan_in, fan_out) in enumerate([(M + (i + 1) * s, 224), (224, 128), (128, s)]):
                d |= _conv(f"lrp_{name}.{i}.lrp_transform.{2 * j}.", fan_in, fan_out, 3)
    return d


BUFFERS = ("relative_position_index", "pedestal", "bound", "_quantized_cdf", "_offset", "_cdf_length", "scale_table",
           "scale_bound", "target")


def test_state_dict_maps_onto_the_released_names_and_shapes():
    with torch.device("meta"):
        codec = mlicpp()
    ours = {k: tuple(v.shape) for k, v in to_mlicpp(codec).items()}
    released = released_state_shapes()
    assert sorted(ours) == sorted(released)
    assert {k: v for k, v in ours.items() if v != released[k]} == {}
    # And back: a released state_dict (here random tensors of those shapes) loads, every tensor in place.
    torch.manual_seed(0)
    state = {k: torch.randn(v) if not k.endswith("relative_position_index") else torch.zeros(v, dtype=torch.long)
             for k, v in released_state_shapes(**{"N": 16, "M": 40, "S": 2}).items() if v != (0,)}
    with pytest.raises(RuntimeError):  # widths other than the released 320-256-128 etc. do not load, as they should not
        load_mlicpp_state_dict(mlicpp(N=16, M=40, num_slices=2, parameter_hidden=(8, 8, 8)), state)
    codec = load_mlicpp_state_dict(mlicpp(N=16, M=40, num_slices=2), state)
    loaded = codec.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in from_mlicpp(state).items())


def test_paper_size_parameter_count():
    with torch.device("meta"):
        codec = mlicpp()
    count = sum(p.numel() for p in codec.parameters())
    released = sum(math.prod(v) for k, v in released_state_shapes().items() if not k.endswith(BUFFERS))
    assert count == released == 83_501_408  # the paper: 83.5M
    s, M = 32, 320
    model = codec.entropy_model
    assert model.channel_context[0] is None and model.global_inter_context[0] is None and model.global_intra_context[0] is None
    assert model.entropy_parameters_anchor[0].fusion[0].in_channels == 2 * M  # first slice: the hyperprior alone
    assert model.entropy_parameters_nonanchor[0].fusion[0].in_channels == 2 * M + 2 * s  # + the local context
    assert [model.global_inter_context[i].num_heads for i in range(1, 10)] == list(range(1, 10))  # s i / 32
    assert model.quantizer == "ste" and model.hyper_quantizer == "ste"


@pytest.mark.parametrize("size", [(128, 192), (192, 128)])
def test_decoder_reproduces_encoder_latent_exactly(size):
    codec = tiny_codec().eval()
    x = torch.rand(1, 3, *size)
    codec.ensure_tables()
    with torch.no_grad():
        y = codec.g_a(x)
        strings, y_hat_encoder = codec.entropy_model.compress(y, CODER)
        y_hat_decoder = codec.entropy_model.decompress(strings, y.shape[-2:], CODER)
        assert torch.equal(codec.entropy_model.quantize(y), y_hat_encoder)
        x_hat_forward = codec(x)["x_hat"]
    assert torch.equal(y_hat_decoder, y_hat_encoder)
    assert not torch.equal(y_hat_encoder, y)
    x_hat = codec.decompress(codec.compress(x, CODER), CODER)
    torch.testing.assert_close(x_hat, x_hat_forward, atol=1e-4, rtol=0)


def test_anchors_are_odd_and_coded_before_the_non_anchors_of_each_slice():
    model = tiny_codec().entropy_model.eval()
    step = MaskRecordingStep()
    with torch.no_grad():
        model.code_latent(None, torch.randn(1, 64, 4, 6), step)
    rows, cols = torch.meshgrid(torch.arange(4), torch.arange(6), indexing="ij")
    odd = (rows + cols) % 2 == 1
    assert len(step.masks) == 2 * 4
    assert all(torch.equal(m, odd) for m in step.masks[0::2]) and all(torch.equal(m, ~odd) for m in step.masks[1::2])


def test_linear_attention_is_the_papers_formula():
    torch.manual_seed(0)
    b, c, length, heads = 2, 12, 20, 3
    q, k, v = torch.randn(3, b, c, length).unbind(0)
    d = c // heads
    expected = []
    for h in range(heads):
        part = slice(h * d, (h + 1) * d)
        K = torch.exp(k[:, part]) / torch.exp(k[:, part]).sum(dim=2, keepdim=True)  # over tokens
        Q = torch.exp(q[:, part]) / torch.exp(q[:, part]).sum(dim=1, keepdim=True)  # over channels
        expected.append(torch.einsum("bit,bjt,bis->bjs", K, v[:, part], Q))  # (K V^T)^T Q
    torch.testing.assert_close(linear_attention(q, k, v, heads), torch.cat(expected, dim=1))
    # Masked (the intra context): keys/values from the anchors only, queries at non-anchors only,
    # as the released code's gather of anchor tokens, attention, scatter to non-anchors.
    anchor = checkerboard_masks(4, 5, anchor_parity=1)[0].reshape(-1)
    out = linear_attention(q, k, v, heads, key_mask=anchor, query_mask=~anchor)
    gathered = linear_attention(q[..., anchor], k[..., anchor], v[..., anchor], heads)  # all-anchor attention
    K = k[..., anchor].reshape(b, heads, d, -1).softmax(-1)
    context = K @ v[..., anchor].reshape(b, heads, d, -1).transpose(-2, -1)
    Q = q[..., ~anchor].reshape(b, heads, d, -1).softmax(2)
    torch.testing.assert_close(out[..., ~anchor], (context.transpose(-2, -1) @ Q).reshape(b, c, -1))
    assert torch.equal(out[..., anchor], torch.zeros_like(out[..., anchor])) and gathered.shape == (b, c, int(anchor.sum()))


def _local_context_by_positions(module: LocalContext, x: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """The local context computed position by position from the released definition."""
    b, c, h, w = x.shape
    k, heads, hd = module.window_size, module.num_heads, module.head_dim
    qkv = module.qkv_proj(module.norm1(x.permute(0, 2, 3, 1)))  # [B, h, w, 3C]
    pad = F.pad(qkv.permute(0, 3, 1, 2), (k // 2,) * 4)
    flags = F.pad(anchor.float(), (k // 2,) * 4)
    out = torch.zeros(b, 2 * c, h, w)
    for i in range(h):
        for j in range(w):
            window = pad[:, :, i:i + k, j:j + k].reshape(b, 3, c, k * k)  # token order: row-major window
            inside = flags[i:i + k, j:j + k].reshape(-1)
            heads_out = []
            for head in range(heads):
                channels = [dd * heads + head for dd in range(hd)]  # heads interleave the channels
                q, kk, v = (window[:, n, channels].transpose(1, 2) for n in range(3))  # [B, k^2, hd]
                logits = (q * hd**-0.5) @ kk.transpose(1, 2)
                for p in range(k * k):
                    for r in range(k * k):
                        dy, dx = p // k - r // k + k - 1, p % k - r % k + k - 1
                        logits[:, p, r] += module.relative_position_table[dy * (2 * k - 1) + dx, head]
                        if not (inside[p] and inside[r]):
                            logits[:, p, r] += -100.0
                heads_out.append(logits.softmax(-1) @ v)  # [B, k^2, hd]
            tokens = torch.cat(heads_out, dim=2)  # channels head-major
            fused = module.fusion(tokens.transpose(1, 2).reshape(b, c, k, k)).reshape(b, 2 * c)
            y = module.proj(fused)
            out[:, :, i, j] = y + module.mlp(module.norm2(y))
    return out


def test_local_context_is_the_released_masked_window_attention():
    torch.manual_seed(0)
    module = LocalContext(4, window_size=3)
    with torch.no_grad():
        module.relative_position_table.normal_()
    anchor = checkerboard_masks(4, 5, anchor_parity=1)[0]
    x = torch.where(anchor, torch.randn(2, 4, 4, 5), 0.0)
    with torch.no_grad():
        torch.testing.assert_close(module(x, anchor), _local_context_by_positions(module, x, anchor), atol=1e-5, rtol=1e-5)
    mask = module.attention_mask(anchor)
    assert mask.shape == (20, 9, 9) and set(mask.unique().tolist()) == {0.0, -100.0}


def _count_calls(modules):
    counts = [0] * len(modules)
    for i, module in enumerate(modules):
        module.register_forward_hook(lambda *_, i=i: counts.__setitem__(i, counts[i] + 1))
    return counts


def test_decoding_runs_each_network_once_per_slice():
    codec = tiny_codec().eval()
    compressed = codec.compress(torch.rand(1, 3, 64, 128), CODER)
    model = codec.entropy_model
    names = ["entropy_parameters_anchor", "entropy_parameters_nonanchor", "lrp_anchor", "lrp_nonanchor", "local_context",
             "channel_context", "global_inter_context", "global_intra_context"]
    counts = {name: _count_calls([m for m in getattr(model, name) if m is not None]) for name in names}
    codec.decompress(compressed, CODER)
    for name in names:
        expected = model.num_slices - (1 if name.startswith(("channel", "global")) else 0)
        assert counts[name] == [1] * expected, name


def training_losses(codec, steps: int = 12) -> list[float]:
    """Losses of ``steps`` Adam steps (lr 1e-3, lambda 0.01) on one random batch of two 64x64 images."""
    codec.train()
    torch.manual_seed(1)
    x = torch.rand(2, 3, 64, 64)
    optimizer = torch.optim.Adam([p for n, p in codec.named_parameters() if not n.endswith("quantiles")], lr=1e-3)
    losses = []
    for _ in range(steps):
        out = codec(x)
        bpp = sum(-torch.log2(lik).sum() for lik in out["likelihoods"].values()) / (2 * 64 * 64)
        loss = 0.01 * 255**2 * F.mse_loss(out["x_hat"], x) + bpp
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_a_few_steps_of_training_lower_the_loss():
    losses = training_losses(tiny_codec())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0], losses
