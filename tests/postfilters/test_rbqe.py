"""RBQE (Xing et al., ECCV 2020) as the official ryanxingql/rbqe: the network's wiring and
constants, the MATLAB IQAM's constants and arithmetic, the early-exit rule, the training loss
(PowerQE's exit weights), the post-filter file, and the post-filter in eval.py and decode."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from codeclab.errors import CodecLabError
from codeclab.formats.network_file import load_network, save_network
from codeclab.postfilters import RBQE, iqam, rbqe
from codeclab.training.rbqe import EXIT_WEIGHTS, JPEG_QUALITIES, RBQEModule, compressed_pairs, jpeg, luma


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory):
    """A ``codec=tiny`` model file at seeded random weights (decoding needs no trained model)."""
    from codeclab.codecs import build_codec
    from codeclab.formats.model_file import export_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny") / "tiny.safetensors"
    export_model(build_codec("mbt2018-mean", {"N": 16, "M": 24}).eval(), path)
    return path


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return RBQE().eval()


def test_network_size_and_width_are_the_official_ones(network):
    # 300,455 parameters: network.py's 32-feature, 6-scale UNet++ with 54 ECAs and 5 exits.
    assert sum(p.numel() for p in network.parameters()) == 300_455
    assert (rbqe.FEATURES, network.exits, rbqe.ECA_KERNEL) == (32, 5, 3)
    assert len(network.eca) == 54 and all(e.conv.bias is None for e in network.eca.values())
    assert network.input[0].in_channels == 1  # the Y plane only
    assert [type(m).__name__ for m in network.down[0]] == ["Conv2d", "ReLU", "Conv2d", "ReLU", "Conv2d", "ReLU"]
    assert network.down[0][4].stride == (2, 2)  # down-sampling by a strided convolution
    node = network.nodes["04"]
    assert (node.up.kernel_size, node.up.stride) == ((2, 2), (2, 2))
    assert node.fuse[0][0].groups == 32 * 5 and node.fuse[0][1].kernel_size == (1, 1)  # separable, 4 skips + up


def test_the_last_anti_diagonal_and_exit_5_have_no_eca(network):
    lowers = {key.removeprefix("lower") for key in network.eca if key.startswith("lower")}
    assert lowers == {f"{i}{j}" for j in range(1, 5) for i in range(5 - j)}  # i + j <= 4 only
    assert {k for k in network.eca if k.startswith("exit")} == {"exit1", "exit2", "exit3", "exit4"}


def test_each_exit_costs_what_its_anti_diagonals_cost(network):
    # Convolution multiply-adds per pixel of exits 1..5 (the official thop list, 10.2 ... 27.6 G at
    # 512x512, also counts biases, pooling and ECA: the same ratios within 5%).
    kmacs = network.exit_kmacs_per_pixel(side=64)
    assert kmacs == pytest.approx([35.52, 48.54, 59.61, 71.52, 84.94], abs=0.01)
    official = np.array(rbqe.OFFICIAL_GMACS_512)
    assert np.allclose(np.array(kmacs) / kmacs[-1], official / official[-1], atol=0.05)


def test_exits_are_residual_and_shallow_exits_do_not_depend_on_deep_ones(network):
    x = torch.rand(1, 1, 64, 96)
    outputs = network(x)
    assert len(outputs) == 5 and all(o.shape == x.shape for o in outputs)
    assert torch.equal(network(x, 2)[1], outputs[1])  # computing fewer exits gives the same exit 2
    zeroed = RBQE()
    for out in zeroed.out:
        torch.nn.init.zeros_(out[1].weight)
        torch.nn.init.zeros_(out[1].bias)
    assert all(torch.equal(o, x) for o in zeroed(x))  # output = input + residual


def test_up_nodes_put_the_skips_first_and_the_upsampled_lower_node_last(network):
    seen = {}
    node = network.nodes["02"]  # two skips (X00, X01) and the lower node X11
    hooks = [node.fuse.register_forward_hook(lambda module, args, out: seen.update(fused=args[0])),
             node.up.register_forward_hook(lambda module, args, out: seen.update(up=out))]
    skip = network.eca["skip02_0"].register_forward_hook(lambda module, args, out: seen.update(first_skip=out))
    network(torch.rand(1, 1, 32, 32), 2)
    for hook in [*hooks, skip]:
        hook.remove()
    assert seen["fused"].shape[1] == 96
    assert torch.equal(seen["fused"][:, :32], seen["first_skip"])
    assert torch.equal(seen["fused"][:, 64:], torch.relu(seen["up"]))


def test_the_iqam_constants_are_the_matlab_ones():
    assert (iqam.SMOOTH_THRESHOLD, iqam.JND_CLIP, iqam.STABILITY) == (0.004, 0.05, 1e-5)
    assert (iqam.BLOCK_WEIGHT, iqam.BLUR_WEIGHT, iqam.GAUSSIAN_SIZE, iqam.GAUSSIAN_SIGMA) == (0.9, 0.1, 3, 5.0)
    assert iqam.PATCH_SIZE == {"jpeg": 8, "hevc": 4}
    assert rbqe.PAPER_THRESHOLDS == {"jpeg": 0.79, "hevc": 0.89}
    kernel = iqam.gaussian_kernel()  # fspecial('gaussian', 3, 5)
    assert kernel[1, 1] == pytest.approx(0.1141, abs=1e-4) and kernel[0, 0] == pytest.approx(0.1096, abs=1e-4)


def test_tchebichef_basis_is_orthonormal_and_matches_the_official_tables():
    for n in (4, 8):
        basis = iqam.tchebichef_basis(n)
        assert np.allclose(basis @ basis.T, np.eye(n))
    assert np.allclose(iqam.tchebichef_basis(4)[1], [-0.6708, -0.2236, 0.2236, 0.6708], atol=1e-4)
    row = iqam.tchebichef_basis(8)[1]
    assert row[0] == pytest.approx(-0.5401, abs=1e-4) and row[-1] == pytest.approx(0.5401, abs=1e-4)


def test_patches_are_offset_by_half_a_block():
    y = np.arange(40 * 48, dtype=np.float64).reshape(40, 48)
    patches = iqam.patches_of(y, 8)
    assert patches.shape == (4 * 5, 8, 8)  # floor(H/N) - 1 by floor(W/N) - 1
    assert patches[0, 0, 0] == y[4, 4] and patches[1, 0, 0] == y[4, 12]


def test_the_moments_give_the_structure_share_of_a_patch():
    patch = np.random.default_rng(0).random((1, 8, 8))
    moments = iqam._moments(patch, iqam.tchebichef_basis(8))
    ssm = (moments**2).sum() - moments[0, 0, 0] ** 2
    assert ssm == pytest.approx(patch.var() / (patch**2).mean())


def _jpeg_y(image, quality):
    return luma(jpeg(image, quality))


def test_the_score_rises_with_jpeg_quality_and_flat_images_score_zero_black_ones_one():
    import skimage.data

    astronaut = skimage.data.astronaut()  # 512x512: the IQAM judges whole images
    scores = [iqam.quality_score(_jpeg_y(astronaut, q)) for q in (10, 30, 90)]
    assert scores[0] < 0.79 < scores[1] < scores[2] <= 1  # QF 10 fails the paper's JPEG threshold
    # A flat patch has no high-order share at all: the strongest blocking (MATLAB's 0); a black
    # one, NaN in MATLAB, scores 1 as in the author's Python port.
    assert iqam.quality_score(np.full((64, 64), 120, np.uint8)) == 0.0
    assert iqam.quality_score(np.zeros((64, 64), np.uint8)) == 1.0
    with pytest.raises(ValueError, match="smaller than two"):
        iqam.quality_score(np.zeros((12, 64), np.uint8))


def test_early_exit_takes_the_first_exit_scoring_at_least_the_threshold(network, monkeypatch):
    scores = iter([0.784, 0.7851, 0.99])
    monkeypatch.setattr(iqam, "quality_score", lambda y, codec_type: next(scores))
    plane = np.full((40, 50), 100, np.uint8)
    output, exit_taken, seen, _ = network.enhance_y(plane)
    assert (exit_taken, seen) == (2, [0.78, 0.79])  # scores rounded to two decimals, as the scripts print them
    scores = iter([0.784, 0.7851, 0.99])
    same, again, _, last = network.enhance_y(plane, all_exits=True)  # the fixed-depth network beside it
    assert again == 2 and np.array_equal(same, output)
    padded = torch.nn.functional.pad(torch.from_numpy(plane / 255.0).float()[None, None], (0, 14, 0, 24), mode="replicate")
    exit5 = network(padded)[-1][0, 0, :40, :50].clamp(0, 1) * 255
    assert np.allclose(last, exit5.detach().double().numpy(), atol=1e-4)
    monkeypatch.setattr(iqam, "quality_score", lambda y, codec_type: 0.0)
    assert network.enhance_y(plane)[1] == 5  # exit 5 is unconditional


def test_enhance_keeps_size_and_chroma_of_any_image(network, photo):
    image = np.ascontiguousarray(photo[:37, :53])
    enhanced = network.enhance(image)
    assert enhanced.image.shape == image.shape and enhanced.image.dtype == np.uint8
    assert 1 <= enhanced.exit <= 5 and enhanced.seconds > 0


def test_training_loss_weights_exits_by_quality_as_powerqe():
    assert JPEG_QUALITIES == (10, 20, 30, 40, 50)
    assert EXIT_WEIGHTS == {50: (2, 1, 1, 0.5, 0.5), 40: (1, 2, 1, 0.5, 0.5), 30: (0.5, 1, 2, 1, 0.5),
                            20: (0.5, 0.5, 1, 2, 1), 10: (0.5, 0.5, 1, 1, 2)}
    module = RBQEModule(RBQE())
    clean = torch.zeros(2, 1, 4, 4)
    outputs = [torch.full_like(clean, 0.1 * (k + 1)) for k in range(5)]  # MSE of exit k: (0.1 (k+1))^2
    expected = np.mean([sum(w * (0.1 * (k + 1)) ** 2 for k, w in enumerate(EXIT_WEIGHTS[q])) for q in (10, 50)])
    assert module.loss(outputs, clean, [10, 50]).item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="no exit weights for JPEG quality 60"):
        RBQEModule(RBQE(), qualities=[60])


def test_training_pairs_are_pillow_jpeg_y_planes(photo):
    crop = torch.from_numpy(photo[:32, :32]).permute(2, 0, 1).float()[None] / 255
    compressed, clean = compressed_pairs(crop, [10])
    assert compressed.shape == clean.shape == (1, 1, 32, 32)
    assert torch.equal(clean[0, 0], torch.from_numpy(luma(photo[:32, :32])).float() / 255)
    assert torch.equal(compressed[0, 0], torch.from_numpy(_jpeg_y(photo[:32, :32], 10)).float() / 255)


def test_postfilter_files_round_trip_and_refuse_what_is_not_one(tmp_path, network):
    path = tmp_path / "rbqe.safetensors"
    save_network(network, "postfilter", path, "bfloat16")
    loaded = load_network(path, "postfilter")
    assert loaded.config == network.config and loaded.threshold == 0.79
    with pytest.raises(CodecLabError, match="holds a 'postfilter' network, not a jscc"):
        load_network(path, "jscc")
    corrupt = tmp_path / "corrupt.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    with pytest.raises(CodecLabError, match="weights hash mismatch"):
        load_network(corrupt, "postfilter")
    with pytest.raises(CodecLabError, match="network file .* does not exist|not found"):
        load_network(tmp_path / "missing.safetensors", "postfilter")


def test_a_hostile_config_fails_before_any_tensor_is_read(tmp_path):
    import json

    from safetensors.torch import save_file

    from codeclab.formats.model_file import weights_sha256

    state = {"input.0.weight": torch.zeros(32, 1, 3, 3)}
    meta = {"format": "codeclab-network", "format_version": "1", "kind": "postfilter", "name": "rbqe",
            "config": json.dumps({"codec_type": "jpeg", "threshold": None}), "weights_sha256": weights_sha256(state)}
    save_file(state, str(tmp_path / "few.safetensors"), metadata=meta)
    with pytest.raises(CodecLabError, match="tensors do not fit the config"):
        load_network(tmp_path / "few.safetensors", "postfilter")
    save_file(state, str(tmp_path / "bad.safetensors"), metadata={**meta, "config": json.dumps({"codec_type": "png"})})
    with pytest.raises(CodecLabError, match="refused: codec_type must be one of"):
        load_network(tmp_path / "bad.safetensors", "postfilter")
    save_file(state, str(tmp_path / "future.safetensors"), metadata={**meta, "format_version": "9"})
    with pytest.raises(CodecLabError, match="unsupported network file format version '9'"):
        load_network(tmp_path / "future.safetensors", "postfilter")


def test_decode_applies_a_postfilter_and_refuses_a_wrong_file(tmp_path, network, tiny_model_file, photo):
    from tests.conftest import run_main

    save_network(network, "postfilter", tmp_path / "rbqe.safetensors")
    image = tmp_path / "in.png"
    Image.fromarray(np.ascontiguousarray(photo[:64, :64])).save(image)
    assert run_main("encode", str(image), "-m", str(tiny_model_file), "-o", str(tmp_path / "a.clab")).returncode == 0
    done = run_main("decode", str(tmp_path / "a.clab"), "-m", str(tiny_model_file), "-o", str(tmp_path / "out.png"),
                    "--postfilter", str(tmp_path / "rbqe.safetensors"))
    assert done.returncode == 0 and "post-filtered in" in done.stdout
    assert np.asarray(Image.open(tmp_path / "out.png")).shape == (64, 64, 3)
    wrong = run_main("decode", str(tmp_path / "a.clab"), "-m", str(tiny_model_file), "-o", str(tmp_path / "no.png"),
                     "--postfilter", str(tiny_model_file))
    assert wrong.returncode != 0 and "not a CodecLab network file" in wrong.stderr and len(wrong.stderr.splitlines()) == 1
    assert not (tmp_path / "no.png").exists()


def test_eval_measures_every_curve_with_and_without_the_postfilter(tmp_path, network, photo):
    from codeclab.evaluation.classic import PillowCodec
    from codeclab.evaluation.run import with_postfilter
    from codeclab.evaluation.runner import EvalImage, evaluate

    save_network(network, "postfilter", tmp_path / "rbqe.safetensors")
    jpeg_codec = PillowCodec("JPEG", ladder=[10, 50], format="JPEG")
    classic, learned = with_postfilter(str(tmp_path / "rbqe.safetensors"), [jpeg_codec], [])
    assert [c.name for c in classic] == ["JPEG", "JPEG+rbqe"] and learned == []
    image = EvalImage("photo", np.ascontiguousarray(photo[:64, :64]))
    points = evaluate([image], classic, workers=1, progress=False)
    plain, filtered = points[:2], points[2:]
    assert [p["bytes"] for p in plain] == [p["bytes"] for p in filtered]  # the same files
    expected = network.enhance(jpeg(image.pixels, 10)).image
    assert filtered[0]["psnr-rgb"] == pytest.approx(10 * np.log10(255**2 / np.mean((expected.astype(float) - image.pixels) ** 2)))


def test_jpeg_helper_is_pillow(photo):
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="JPEG", quality=30)
    assert np.array_equal(jpeg(photo, 30), np.asarray(Image.open(buffer)))


def test_training_can_continue_from_a_committed_post_filter_file(tmp_path):
    """``train.py experiment=rbqe init_weights=FILE``: the module starts from the file's weights,
    and only from a file of the same network and configuration."""
    torch.manual_seed(1)
    trained = RBQE()
    save_network(trained, "postfilter", tmp_path / "rbqe.safetensors")
    torch.manual_seed(2)
    module = RBQEModule(RBQE())
    module.init_from(tmp_path / "rbqe.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(module.network.state_dict().values(), trained.state_dict().values()))
    save_network(RBQE(codec_type="hevc"), "postfilter", tmp_path / "hevc.safetensors")
    with pytest.raises(CodecLabError, match="not the 'rbqe'"):
        module.init_from(tmp_path / "hevc.safetensors")
