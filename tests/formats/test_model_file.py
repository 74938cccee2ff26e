import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from codeclab.cli import main
from codeclab.codecs import mbt2018_mean
from codeclab.coding import get_coder
from codeclab.entropy_models.integer import integer_convolutions
from codeclab.errors import CodecLabError
from codeclab.formats.file_coding import model_hash
from codeclab.formats.model_file import FORMAT_VERSION, export_model, load_model, read_metadata, weights_sha256
from codeclab.registry import UnknownName
from tests.conftest import rewrite_model_file

CODER = get_coder()


@pytest.fixture
def exported(tmp_path):
    torch.manual_seed(0)
    codec = mbt2018_mean(N=16, M=24)
    path = tmp_path / "m.safetensors"
    return export_model(codec, path), path


def test_export_load_roundtrip(exported):
    codec, path = exported
    loaded = load_model(path)
    assert read_metadata(path)["format_version"] == FORMAT_VERSION == "9"
    assert read_metadata(path)["portable"] == "true"
    assert loaded.codec_id == "mbt2018-mean"
    assert loaded.config == {
        "N": 16, "M": 24, "rate_levels": 0, "lmbda_min": 0.0018, "lmbda_max": 0.0483, "scale_table_levels": 64,
        "arithmetic": "integer", "lmbdas": None,
    } and not loaded.training
    assert loaded.model_sha256 == codec.model_sha256
    for name, tensor in codec.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    assert loaded.tables_are_current()
    x = torch.rand(1, 3, 64, 64)
    assert loaded.compress(x, CODER).strings == codec.compress(x, CODER).strings



def test_stale_tables_refused(exported):
    _, path = exported

    def move_quantiles(tensors):
        tensors["entropy_model.entropy_bottleneck.quantiles"] += 1.0

    def rehash(meta, tensors):  # a consistent file whose tables no longer fit its weights
        meta["weights_sha256"] = weights_sha256(tensors)

    rewrite_model_file(path, move_quantiles, rehash)
    with pytest.raises(CodecLabError, match="stale entropy tables"):
        load_model(path)


def test_corrupt_weights_detected(exported):
    _, path = exported
    rewrite_model_file(path, lambda t: t["g_a.0.weight"].mul_(1.01))
    with pytest.raises(CodecLabError, match="weights hash mismatch"):
        load_model(path)


def test_bad_files(tmp_path, exported):
    with pytest.raises(CodecLabError, match="model file not found"):
        load_model(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(CodecLabError, match="not a CodecLab model file"):
        load_model(junk)
    pickled = tmp_path / "pickle.safetensors"
    torch.save({"a": torch.zeros(1)}, pickled)
    with pytest.raises(CodecLabError, match="not a CodecLab model file"):
        load_model(pickled)
    _, path = exported
    rewrite_model_file(path, mutate_meta=lambda meta, _: meta.update(codec="no-such-codec"))
    with pytest.raises(CodecLabError, match="unknown codec 'no-such-codec'"):
        load_model(path)


def test_config_mismatch(exported):
    _, path = exported
    rewrite_model_file(path, mutate_meta=lambda meta, _: meta.update(config=json.dumps({"N": 32, "M": 24})))
    with pytest.raises(CodecLabError, match="is refused: unexpected tensor"):
        load_model(path)


def test_unknown_coder():
    with pytest.raises(UnknownName, match="unknown entropy coder 'nope'"):
        get_coder("nope")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_weights_halve_the_file_and_load_exactly(tmp_path, dtype):
    torch.manual_seed(0)
    codec = mbt2018_mean(N=16, M=24)
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    export_model(mbt2018_mean(N=16, M=24), full)
    codec = export_model(codec, half, weights_dtype=dtype)
    with safe_open(str(half), framework="pt") as handle:
        assert handle.get_tensor("g_a.0.weight").dtype == getattr(torch, dtype)
        assert handle.get_tensor("entropy_model.gaussian_conditional._quantized_cdf").dtype == torch.int32
    assert read_metadata(half)["weights_dtype"] == dtype
    loaded = load_model(half)
    assert loaded.model_sha256 == codec.model_sha256
    # The exporting codec was rounded in place: it computes exactly what the file holds.
    for name, tensor in codec.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    integer = {f"{name}.weight" for name, _ in integer_convolutions(codec)}  # int16 in both files
    weights = sum(p.numel() for name, p in codec.named_parameters() if name not in integer)
    assert integer and full.stat().st_size - half.stat().st_size >= 2 * weights - 4096


def test_unknown_weights_dtype_is_refused(tmp_path):
    with pytest.raises(CodecLabError, match="weights dtype must be one of"):
        export_model(mbt2018_mean(N=16, M=24), tmp_path / "m.safetensors", weights_dtype="int8")


def test_init_weights_copies_shared_tensors_into_a_new_architecture(exported, tmp_path):
    from codeclab.formats.model_file import init_weights

    codec, path = exported
    variable = mbt2018_mean(N=16, M=24, rate_levels=8, scale_table_levels=256)
    fresh = init_weights(variable, path)
    assert fresh == ["entropy_model.gain_bank.lmbdas", "entropy_model.gain_bank.log_gain"]
    assert torch.equal(variable.g_s[0].weight, codec.g_s[0].weight)
    assert variable.entropy_model.gaussian_conditional.scale_levels == 256


def test_integer_weights_are_stored_as_int16_and_a_lying_shift_is_refused(exported):
    codec, path = exported
    with safe_open(str(path), framework="pt") as handle:
        weight = handle.get_tensor("entropy_model.h_s.0.weight")
        shift = handle.get_tensor("entropy_model.h_s.0.weight_shift")
    assert weight.dtype == torch.int16 and shift.dtype == torch.int8 and shift.shape == (weight.shape[1],)
    assert 2**13 <= weight.int().abs().max() < 2**15  # the largest weight of a channel uses the top bits

    def wrong_shape(tensors):
        tensors["entropy_model.h_s.0.weight_shift"] = tensors["entropy_model.h_s.0.weight_shift"][:2].clone()

    rewrite_model_file(path, wrong_shape, lambda meta, tensors: meta.update(weights_sha256=weights_sha256(tensors)))
    with pytest.raises(CodecLabError, match="is refused"):
        load_model(path)


def test_walloc_files_before_format_4_keep_their_residual_decoder(tmp_path):
    """Format 4 moved WaLLoC's default decoder to the official AutoencoderKL one; a format-3 file,
    whose config has no ``decoder``, is rebuilt with the residual decoder it was written with
    (codeclab.compat's ``walloc_v1``)."""
    from codeclab.codecs import walloc
    from codeclab.compat.transforms import WaLLoCSynthesisV1

    torch.manual_seed(0)
    path = tmp_path / "w.safetensors"
    export_model(walloc(levels=2, latent_channels=6, decoder_channels=16,
                        transform={"name": "walloc_v1", "decoder_blocks": 2}), path)
    with safe_open(str(path), framework="pt") as handle:
        state, metadata = {k: handle.get_tensor(k) for k in handle.keys()}, handle.metadata()
    config = json.loads(metadata["config"])
    del config["transform"], config["decoder_groups"]
    config["decoder_blocks"] = 2  # format 3's own argument
    old = tmp_path / "w3.safetensors"
    save_file(state, str(old), metadata={**metadata, "format_version": "3", "config": json.dumps(config)})
    first = load_model(old)
    assert type(first.g_s) is WaLLoCSynthesisV1
    assert torch.equal(first.g_s.decoder[0].weight, load_model(path).g_s.decoder[0].weight)
    save_file(state, str(old), metadata={**metadata, "format_version": "4", "config": json.dumps(config)})
    with pytest.raises(CodecLabError, match="is refused"):
        load_model(old)  # format 4 without 'decoder' means the AutoencoderKL decoder: these weights do not fit


def test_cheng2020_files_before_format_5_keep_their_first_mixture(tmp_path):
    """Format 5 moved cheng2020's Gaussian mixture to the official code's (640-wide entropy
    parameters, per-component channel order); a format-4 file, whose config has no
    ``mixture_layout``, is rebuilt with the first mixture it was written with (codeclab.compat)."""
    from codeclab.codecs import cheng2020_anchor
    from codeclab.compat.entropy_models import AutoregressiveEntropyModelV1

    torch.manual_seed(0)
    path = tmp_path / "c.safetensors"
    export_model(cheng2020_anchor(N=16, entropy="autoregressive_v1"), path)
    with safe_open(str(path), framework="pt") as handle:
        state, metadata = {k: handle.get_tensor(k) for k in handle.keys()}, handle.metadata()
    config = json.loads(metadata["config"])
    del config["entropy"]
    old = tmp_path / "c4.safetensors"
    save_file(state, str(old), metadata={**metadata, "format_version": "4", "config": json.dumps(config)})
    assert type(load_model(old).entropy_model) is AutoregressiveEntropyModelV1
    save_file(state, str(old), metadata={**metadata, "format_version": "5", "config": json.dumps(config)})
    with pytest.raises(CodecLabError, match="is refused"):
        load_model(old)  # format 5 without 'mixture_layout' means the official mixture: these weights do not fit


def test_walloc_files_before_format_5_keep_their_png_latent_image(tmp_path):
    """Format 5 moved WaLLoC's default latent image to the official three-plane WebP; a format-4
    config without ``lossless_format`` means the PNG mosaic it was written with."""
    from codeclab.codecs import walloc

    torch.manual_seed(0)
    path = tmp_path / "w.safetensors"
    export_model(walloc(levels=2, latent_channels=6, decoder_channels=16, decoder_groups=4,
                        lossless_format="png"), path)
    with safe_open(str(path), framework="pt") as handle:
        state, metadata = {k: handle.get_tensor(k) for k in handle.keys()}, handle.metadata()
    config = json.loads(metadata["config"])
    del config["lossless_format"]
    for version, expected in (("4", "png"), ("5", "webp_rgb")):
        old = tmp_path / f"w{version}.safetensors"
        save_file(state, str(old), metadata={**metadata, "format_version": version, "config": json.dumps(config)})
        assert load_model(old).entropy_model.lossless_format == expected


def test_info_of_a_model_file(exported, capsys):
    codec, path = exported
    assert main(["info", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["format"], info["format_version"], info["codec"]) == ("model", FORMAT_VERSION, "mbt2018-mean")
    assert info["config"] == codec.config and info["portable"] is True and info["weights_dtype"] == "float32"
    assert info["weights_sha256"] == read_metadata(path)["weights_sha256"] and info["model_hash"] == model_hash(codec).hex()
    with safe_open(str(path), framework="pt") as handle:
        tensors = [handle.get_tensor(k) for k in handle.keys()]
    assert info["tensors"] == len(tensors)
    assert info["tensor_bytes"] == sum(t.numel() * t.element_size() for t in tensors)
    assert info["file_bytes"] == path.stat().st_size


@pytest.mark.parametrize("content, message", [
    (b"", "no safetensors header"),
    ((1 << 40).to_bytes(8, "little") + b"{}", "no safetensors header"),  # a size beyond the file
    ((5).to_bytes(8, "little") + b"{nope", "corrupt safetensors header"),
    ((2).to_bytes(8, "little") + b"{}", "no codeclab metadata"),
])
def test_info_of_a_bad_model_file_is_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    assert main(["info", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("codeclab: error: not a CodecLab model file") and message in err and err.count("\n") == 1
