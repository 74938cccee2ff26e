"""WaLLoC: the wavelet packet transform, both bottlenecks, files, CLI and compressed-domain access."""

import numpy as np
import pytest
import pywt
import torch
from PIL import Image

from codeclab.codecs import walloc
from codeclab.coding import get_coder
from codeclab.compat.entropy_models import BoundedLatentImageV1
from codeclab.data.images import read_image
from codeclab.entropy_models.bounded import BoundedLatentImage
from codeclab.entropy_models.factorized import FactorizedEntropyModel
from codeclab.errors import CodecLabError
from codeclab.formats.image_file import decode_image, encode_image
from codeclab.formats.latent_access import y_hat_of_file, y_hat_of_folder
from codeclab.formats.model_file import export_model, load_model
from codeclab.transforms.wavelet import WaveletPacket2d
from tests.conftest import ROOT, image_tensor

CODER = get_coder()

TINY = {"levels": 2, "latent_channels": 6, "decoder_channels": 16, "decoder_groups": 4}


def dimension_reduction(codec) -> float:
    """Input values per latent value, ``3 * 4**levels / latent_channels`` (checked against the real latent)."""
    reduction = 3 * 4 ** codec.config["levels"] / codec.config["latent_channels"]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert x.numel() / codec.g_a(x).numel() == reduction
    return reduction


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_packets_match_pywavelets(levels):
    x = torch.rand(2, 3, 32, 48, dtype=torch.float64)
    coeffs = WaveletPacket2d("bior4.4", levels)(x)
    assert coeffs.shape == (2, 3 * 4**levels, 32 // 2**levels, 48 // 2**levels)
    for batch, channel in [(0, 0), (1, 2)]:
        tree = pywt.WaveletPacket2D(x[batch, channel].numpy(), "bior4.4", mode="periodization", maxlevel=levels)
        reference = np.stack([node.data for node in tree.get_level(levels, order="natural")])
        packets = coeffs[batch, channel * 4**levels : (channel + 1) * 4**levels].numpy()
        np.testing.assert_allclose(packets, reference, atol=1e-5)


@pytest.mark.parametrize("levels,size", [(1, (2, 6)), (3, (8, 8)), (3, (64, 96)), (3, (512, 768)), (2, (36, 20))])
def test_perfect_reconstruction(levels, size):
    wpt = WaveletPacket2d("bior4.4", levels)
    x = torch.rand(1, 3, *size)
    assert (wpt.inverse(wpt(x)) - x).abs().max() < 1e-4


def test_packet_transform_rejects_sizes_it_cannot_split():
    with pytest.raises(ValueError, match="not a multiple of 8"):
        WaveletPacket2d("bior4.4", 3)(torch.rand(1, 3, 60, 64))


def test_linear_encoder_is_affine():
    codec = walloc(**TINY)
    x1, x2 = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        lhs = codec.g_a(x1) + codec.g_a(x2) - codec.g_a(torch.full_like(x1, 0.5))
        assert torch.allclose(lhs, codec.g_a(x1 + x2 - 0.5), atol=1e-5)
    assert dimension_reduction(walloc()) == 16 and dimension_reduction(walloc(latent_channels=48)) == 4


@pytest.mark.parametrize("config", [{"bottleneck": "bounded"}, {"bottleneck": "bounded", "lossless_format": "webp"},
                                    {"bottleneck": "bounded", "lossless_format": "webp_rgb"}, {"bottleneck": "factorized"}])
def test_coded_latents_equal_encoder_latents(config, photo):
    codec = walloc(**TINY, **config).eval()
    x = image_tensor(photo)[..., :64, :96]
    compressed = codec.compress(x, CODER)
    decoded = codec.decompress_y(compressed.strings, compressed.size, CODER)
    assert decoded.shape == (1, 6, 16, 24)
    assert torch.equal(decoded, codec.quantize(x))
    with torch.no_grad():
        assert torch.allclose(codec.decompress(compressed, CODER), codec(x)["x_hat"], atol=1e-5)


@pytest.mark.parametrize("fmt, magic", [("png", b"\x89PNG"), ("webp", b"RIFF")])
def test_bounded_latents_are_real_lossless_images(photo, fmt, magic):
    """The stream is an image any decoder reads (Pillow, independently of the project's unpacking),
    whose tiles hold the paper's integers, offset by 2^(b-1), channel by channel in row order."""
    import io

    torch.manual_seed(0)
    codec = walloc(**TINY, lossless_format=fmt).eval()
    x = image_tensor(photo)[..., :64, :96]
    stream = codec.compress(x, CODER).strings[0]
    assert stream.startswith(magic)
    with Image.open(io.BytesIO(stream)) as image:
        mosaic = np.asarray(image.convert("L"), dtype=np.int64)
    with torch.no_grad():
        q = codec.entropy_model.integers(codec.g_a(x))[0]  # [6, 16, 24]
    assert q.min() >= -127 and q.max() <= 127 and q.min() < 0 < q.max()  # signed integers, both signs used
    columns = 3  # ceil(sqrt(6))
    for c in range(6):
        row, column = divmod(c, columns)
        tile = mosaic[row * 16 : (row + 1) * 16, column * 24 : (column + 1) * 24]
        assert np.array_equal(tile, q[c].numpy().astype(np.int64) + 128), c


def test_webp_rgb_is_the_official_three_plane_mosaic(photo):
    """``lossless_format="webp_rgb"`` stores what the official ``latent_to_pil(z, bits, 3)`` builds,
    ``rearrange(z + 2^(b-1), 'b (c nh nw) h w -> b (nh h) (nw w) c', c=3)``, as lossless WebP;
    written here with einops and the official pattern, read back with Pillow alone."""
    import io

    from einops import rearrange

    torch.manual_seed(0)
    codec = walloc(levels=2, latent_channels=12, decoder_channels=16, decoder_groups=4,
                   lossless_format="webp_rgb").eval()
    x = image_tensor(photo)[..., :64, :96]
    stream = codec.compress(x, CODER).strings[0]
    assert stream.startswith(b"RIFF") and b"VP8L" in stream[:40]  # WebP, lossless bitstream
    with Image.open(io.BytesIO(stream)) as image:
        assert image.mode == "RGB"
        stored = torch.from_numpy(np.asarray(image, dtype=np.int64).copy())
    with torch.no_grad():
        q = codec.entropy_model.integers(codec.g_a(x)).long()  # [1, 12, 16, 24]: n = 2 per plane
    official = rearrange(q + 128, "b (c nh nw) h w -> b (nh h) (nw w) c", c=3, nh=2, nw=2)[0]
    assert torch.equal(stored, official)
    assert torch.equal(codec.decompress_y(codec.compress(x, CODER).strings, x.shape[-2:], CODER), codec.quantize(x))


def _walloc_reference(y: float, bits: int = 8) -> tuple[float, float]:
    """The official mapping, written out with the standard library: ``(q, decoder input of round(q))``."""
    from statistics import NormalDist

    normal = NormalDist()
    s = (2 ** (bits - 1) - 1) / 1.85
    limit = 2 ** (bits - 1) - 0.5 - 1e-3
    q = 2 * limit * (normal.cdf(y / s) - 0.5)
    p = min(max(round(q) / (2 * limit) + 0.5, 1e-4), 1 - 1e-4)
    return q, s * normal.inv_cdf(p)


def test_walloc_mapping_matches_the_official_formula_at_chosen_points():
    model = BoundedLatentImage(4, bits=8).eval()
    points = [-1e3, -300.0, -68.6, -5.3, -0.2, 0.0, 0.49, 12.0, 68.65, 140.0, 1e3]
    y = torch.tensor(points, dtype=torch.float64)
    q = model.bounded(y)
    y_hat = model.quantize(y)
    for i, point in enumerate(points):
        ref_q, ref_y_hat = _walloc_reference(point)
        assert abs(q[i].item() - ref_q) < 1e-9, point
        assert abs(y_hat[i].item() - ref_y_hat) < 1e-7, point
    assert model.integers(y).abs().max() == 127 and model.scale == 127 / 1.85 and model.limit == 127.499
    assert model(torch.randn(1, 4, 2, 2))["likelihoods"] == {}  # the official loss is MSE only


def test_first_mapping_is_kept_for_older_files():
    first = BoundedLatentImageV1(4, bits=8).eval()
    y = torch.tensor([-3.0, 0.0, 0.3, 3.0])
    assert torch.equal(first.integers(y), torch.round(torch.special.ndtr(y) * 255))
    assert torch.equal(first.quantize(y), first.integers(y) * (2 / 255) - 1.0)  # the synthesis' [-1, 1]


def test_corrupt_latent_streams_raise_value_error(photo):
    codec = walloc(**TINY).eval()
    x = image_tensor(photo)[..., :64, :96]
    stream = codec.compress(x, CODER).strings[0]
    with pytest.raises(ValueError, match="does not decode"):
        codec.decompress_y([stream[: len(stream) // 2]], (64, 96), CODER)
    with pytest.raises(ValueError, match="expected"):
        codec.decompress_y([stream], (32, 96), CODER)


@pytest.mark.filterwarnings("ignore:You are trying to")  # logging outside a Trainer is expected here
def test_training_lowers_the_loss():
    from codeclab.training import RateDistortionModule

    torch.manual_seed(0)
    module = RateDistortionModule(walloc(**TINY), lmbda=0.05, optimizer=lambda params: torch.optim.Adam(params, lr=1e-3))
    optimizer = module.configure_optimizers()
    batch = torch.rand(4, 3, 32, 32) * 0.5 + torch.linspace(0, 0.5, 32)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        out = module.training_step(batch, 0)
        out["loss"].backward()
        optimizer.step()
        losses.append(float(out["rd_loss"]))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


@pytest.fixture(scope="module")
def walloc_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("walloc_models")
    torch.manual_seed(0)
    paths = {}
    for bottleneck in ("bounded", "factorized"):
        paths[bottleneck] = folder / f"{bottleneck}.safetensors"
        export_model(walloc(**TINY, bottleneck=bottleneck), paths[bottleneck])
    return paths


def test_files_round_trip_and_compressed_domain_access(walloc_models, photo, tmp_path):
    for bottleneck, model_path in walloc_models.items():
        codec = load_model(model_path)
        data = encode_image(codec, photo)
        folder = tmp_path / bottleneck
        folder.mkdir()
        (folder / "photo.clab").write_bytes(data)
        Image.fromarray(photo).save(folder / "photo.png")
        latents = y_hat_of_folder(codec, folder)
        assert set(latents) == {"photo.clab", "photo.png"}
        # The file's latent (entropy decoding only) is the encoder's latent of the image.
        assert torch.equal(latents["photo.clab"], latents["photo.png"])
        assert latents["photo.clab"].shape == (6, -(-photo.shape[0] // 4), -(-photo.shape[1] // 4))
        assert decode_image(data, codec).shape == photo.shape
        other = load_model(walloc_models["factorized" if bottleneck == "bounded" else "bounded"])
        with pytest.raises(CodecLabError, match="wrong model"):
            y_hat_of_file(other, folder / "photo.clab")


def test_cli_round_trip(walloc_models, photo, tmp_path, capsys):
    # In-process: the subprocess paths of the CLI are covered by tests/integration/test_cli.py.
    from codeclab.cli import main

    Image.fromarray(photo).save(tmp_path / "in.png")
    model = str(walloc_models["bounded"])
    assert main(["encode", str(tmp_path / "in.png"), "-m", model, "-o", str(tmp_path / "in.clab")]) == 0
    assert main(["decode", str(tmp_path / "in.clab"), "-m", model, "-o", str(tmp_path / "out.png")]) == 0
    expected = decode_image((tmp_path / "in.clab").read_bytes(), load_model(model))
    assert np.array_equal(read_image(tmp_path / "out.png"), expected)
    data = (tmp_path / "in.clab").read_bytes()
    (tmp_path / "cut.clab").write_bytes(data[: len(data) - 40])
    capsys.readouterr()
    assert main(["decode", str(tmp_path / "cut.clab"), "-m", model, "-o", str(tmp_path / "cut.png")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("codeclab: error:") and err.count("\n") == 1
    assert not (tmp_path / "cut.png").exists()


@pytest.mark.parametrize("name,reduction,bottleneck", [
    ("walloc", 16, "bounded"), ("walloc_4x", 4, "bounded"), ("walloc_factorized", 16, "factorized"), ("walloc_tiny", 8, "bounded"),
])
def test_configs_build_the_paper_settings(name, reduction, bottleneck):
    import hydra
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"codec={name}"])
    codec = hydra.utils.instantiate(cfg.codec)
    assert codec.codec_id == "walloc"
    assert dimension_reduction(codec) == reduction and codec.config["bottleneck"] == bottleneck
    expected_model = BoundedLatentImage if bottleneck == "bounded" else FactorizedEntropyModel
    assert isinstance(codec.entropy_model, expected_model)


def test_packet_channel_order_is_the_official_compositions():
    """WaLLoC's code builds packets by repeating a one-level 2-D DWT (pytorch_wavelets'
    ``DWTForward(J=1, mode="periodization")``) and flattening ``[B, C, (LL, LH, HL, HH), h, w]`` to
    channels, level after level. pytorch_wavelets' bands are PyWavelets' ``(cA, (cH, cV, cD))``
    (checked by hand against pytorch_wavelets 1.3.0, whose import needs pkg_resources); the same
    composition written with PyWavelets gives exactly CodecLab's channel order."""
    x = np.random.default_rng(0).random((1, 2, 32, 48))
    levels = 2
    y = x
    for _ in range(levels):
        bands = []
        for channel in range(y.shape[1]):
            cA, (cH, cV, cD) = pywt.dwt2(y[0, channel], "bior4.4", mode="periodization")
            bands += [cA, cH, cV, cD]
        y = np.stack(bands)[None]
    ours = WaveletPacket2d("bior4.4", levels)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, y, atol=1e-5)
