"""The project's own layers equal compressai 1.2.8's: same state_dict keys, outputs and gradients."""

import compressai.layers as cl
import pytest
import torch
from compressai.models.utils import conv as cai_conv
from compressai.models.utils import deconv as cai_deconv

from codeclab.transforms import layers


def _same_module(ours, theirs, x, perturb=True):
    """Copy ``theirs``' (perturbed) weights into ``ours``; outputs and input gradients must be equal."""
    torch.manual_seed(0)
    if perturb:
        with torch.no_grad():
            for p in theirs.parameters():
                p.add_(0.1 * torch.randn_like(p))
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_a, out_b = ours(xa), theirs(xb)
    assert torch.equal(out_a, out_b)
    weights = torch.randn_like(out_a)
    (out_a * weights).sum().backward()
    (out_b * weights).sum().backward()
    assert torch.equal(xa.grad, xb.grad)
    for (name, pa), (_, pb) in zip(sorted(ours.named_parameters()), sorted(theirs.named_parameters())):
        assert torch.equal(pa.grad, pb.grad), name


@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_equals_compressai(inverse):
    _same_module(layers.GDN(8, inverse=inverse), cl.GDN(8, inverse=inverse), torch.randn(2, 8, 9, 7))


def test_gdn_initialisation_equals_compressai():
    ours, theirs = layers.GDN(5), cl.GDN(5)
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key


def test_lower_bound_gradient_passes_only_upwards():
    bound = layers.LowerBound(1.0)
    x = torch.tensor([0.5, 0.5, 2.0], requires_grad=True)
    bound(x).backward(torch.tensor([1.0, -1.0, 1.0]))
    # Below the bound: a gradient that would lower the loss by raising x passes (-1), the other not.
    assert x.grad.tolist() == [0.0, -1.0, 1.0]


@pytest.mark.parametrize("in_ch, out_ch", [(8, 8), (8, 12)])
def test_residual_block_equals_compressai(in_ch, out_ch):
    _same_module(layers.ResidualBlock(in_ch, out_ch), cl.ResidualBlock(in_ch, out_ch), torch.randn(1, in_ch, 6, 5))


def test_attention_block_equals_compressai():
    _same_module(layers.AttentionBlock(8), cl.AttentionBlock(8), torch.randn(1, 8, 6, 5))


def test_conv_and_deconv_shapes_and_padding_equal_compressai():
    x = torch.randn(1, 3, 16, 24)
    _same_module(layers.conv(3, 4), cai_conv(3, 4), x)
    _same_module(layers.deconv(3, 4), cai_deconv(3, 4), x)
    assert layers.conv(3, 4)(x).shape[-2:] == (8, 12)
    assert layers.deconv(3, 4)(x).shape[-2:] == (32, 48)
