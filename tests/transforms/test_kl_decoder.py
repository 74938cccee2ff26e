"""WaLLoC's official decoder: diffusers' AutoencoderKL decoder, reproduced with diffusers' names."""

import pytest
import torch

from codeclab.codecs import walloc
from codeclab.compat.transforms import WaLLoCSynthesisV1
from codeclab.transforms.kl_decoder import AutoencoderKLDecoder

# The configuration in WaLLoC's official code (Decoder(in_channels=latent_dim,
# out_channels=channels * 4**J, up_block_types=("UpDecoderBlock2D",), block_out_channels=(N,),
# layers_per_block=2, norm_num_groups=32, act_fn="silu", mid_block_add_attention=True)), N = 768.
OFFICIAL = dict(in_channels=12, out_channels=192, block_out_channels=(768,), layers_per_block=2, norm_num_groups=32)


def test_paper_size_shapes_and_parameter_count():
    with torch.device("meta"):
        decoder = AutoencoderKLDecoder(**OFFICIAL)
    shapes = {k: tuple(v.shape) for k, v in decoder.state_dict().items()}
    assert sum(p.numel() for p in decoder.parameters()) == 56_883_648
    assert shapes["conv_in.weight"] == (768, 12, 3, 3) and shapes["conv_out.weight"] == (192, 768, 3, 3)
    assert shapes["mid_block.attentions.0.to_q.weight"] == (768, 768)
    assert {k.split(".")[3] for k in shapes if k.startswith("up_blocks.0.resnets.")} == {"0", "1", "2"}
    assert not any("upsamplers" in k for k in shapes)  # one block: no upsampling
    assert decoder.conv_norm_out.num_groups == 32 and decoder.conv_norm_out.eps == 1e-6


def test_the_whole_codec_has_the_official_models_parameter_count():
    """The official training notebook (train_rgb, RGB model v1.0.2: J=3, latent_dim=16, Nd=768,
    lightweight_encode) prints 56.914384M parameters: linear encoder plus this decoder."""
    with torch.device("meta"):
        codec = walloc(latent_channels=16)
    assert sum(p.numel() for p in codec.parameters()) == 56_914_384


def test_walloc_default_is_the_official_decoder_and_the_first_one_is_the_compat_transform():
    with torch.device("meta"):
        official, first = walloc(), walloc(decoder_channels=128, transform="walloc_v1")
    assert isinstance(official.g_s.decoder, AutoencoderKLDecoder)
    assert official.g_s.decoder.conv_in.out_channels == 768
    assert type(first.g_s) is WaLLoCSynthesisV1 and first.g_s.decoder[0].out_channels == 128
    with pytest.raises(ValueError, match="unknown transform 'unet'"):
        walloc(transform="unet")


@pytest.mark.parametrize("blocks", [(32,), (32, 64)])
def test_matches_diffusers(blocks):
    """Same names, same numbers as diffusers' Decoder (skipped where diffusers is not installed)."""
    vae = pytest.importorskip("diffusers.models.autoencoders.vae")
    torch.manual_seed(0)
    theirs = vae.Decoder(in_channels=6, out_channels=48, up_block_types=("UpDecoderBlock2D",) * len(blocks),
                         block_out_channels=blocks, layers_per_block=2, norm_num_groups=8, act_fn="silu",
                         mid_block_add_attention=True).eval()
    ours = AutoencoderKLDecoder(6, 48, blocks, 2, 8).eval()
    ours.load_state_dict(theirs.state_dict())  # strict: the same keys and shapes
    x = torch.randn(2, 6, 5, 7)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)
