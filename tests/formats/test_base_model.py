"""Base models (model format 9): a video codec's file names its frozen image codec's file by hash
instead of storing a copy; loading finds, checks and combines the two, and refuses every way the
pair could disagree."""

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from codeclab.codecs import mbt2018_mean, stem
from codeclab.errors import CodecLabError
from codeclab.formats.model_file import export_model, init_weights, load_model, weights_sha256
from codeclab.formats.model_header import BASE_MODEL, model_sha256, read_header
from codeclab.formats.video_file import decode_video, encode_video
from tests.conftest import ROOT, run_main
from tests.formats.test_video_file import _clip

SIZES = dict(N=8, M=12, rate_levels=4, scale_table_levels=256)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """``models/zoo/image.safetensors`` and ``models/video.safetensors`` based on it, plus the
    self-contained export of the same video codec."""
    root = tmp_path_factory.mktemp("based")
    (root / "models" / "zoo").mkdir(parents=True)
    torch.manual_seed(0)
    image = root / "models" / "zoo" / "image.safetensors"
    export_model(mbt2018_mean(**SIZES), image)
    video = stem(**SIZES, spatial="checkerboard")
    init_weights(video, image)
    whole = export_model(video, root / "whole.safetensors")
    based = root / "models" / "video.safetensors"
    export_model(whole, based, base_model=image)
    return root, image, based, root / "whole.safetensors"


def _rewrite(source, target, tensors=None, **metadata):
    """``source`` with some tensors and metadata replaced, its weights hash kept valid."""
    with safe_open(str(source), framework="pt") as handle:
        state = {name: handle.get_tensor(name) for name in handle.keys()}
        meta = dict(handle.metadata())
    state.update(tensors or {})
    meta.update(metadata, weights_sha256=weights_sha256(state))
    save_file(state, target, metadata=meta)
    return target


def test_the_based_file_stores_only_what_its_base_does_not(pair):
    _, image, based, whole = pair
    header, image_header = read_header(based), read_header(image)
    assert header.metadata["format_version"] == "9"
    assert header.metadata[BASE_MODEL] == model_sha256(image_header.metadata)
    # The model hash covers the base: the same tensors on another base are another model.
    assert model_sha256({**header.metadata, BASE_MODEL: "ab" * 32}) != model_sha256(header.metadata)
    assert not set(header.specs) & set(image_header.specs)
    assert set(header.specs) | set(image_header.specs) == set(read_header(whole).specs)
    assert all(name.startswith("temporal_model.") for name in header.specs)
    assert based.stat().st_size + image.stat().st_size < whole.stat().st_size + image.stat().st_size
    info = json.loads(run_main("info", based, check=True).stdout)
    assert info["base_model"] == header.metadata[BASE_MODEL]


def test_loading_combines_the_two_files_into_the_same_codec(pair):
    _, image, based, whole = pair
    combined, reference, image_codec = load_model(based), load_model(whole), load_model(image)
    state, expected = combined.state_dict(), reference.state_dict()
    assert state.keys() == expected.keys()
    for name, tensor in image_codec.state_dict().items():  # the image codec's stored tables included
        assert torch.equal(state[name], tensor), name
    for name in state:
        if name.startswith("temporal_model.") and name not in reference.table_buffer_names():
            assert torch.equal(state[name], expected[name]), name
    # The model hash names the pair: another base would give the same weights another name.
    assert combined.model_sha256 == model_sha256(read_header(based).metadata) != reference.model_sha256
    clip = _clip(frames=3)
    encoded = encode_video(combined, clip, intra_period=-1, level=2, keep_latents=True)
    decoded = decode_video(encoded.data, load_model(based))
    assert len(decoded.frames) == 3


def test_the_base_is_found_beside_in_zoo_in_models_dirs_or_refused(pair, tmp_path, monkeypatch):
    _, image, based, _ = pair
    alone = tmp_path / "alone"
    alone.mkdir()
    moved = shutil.copy(based, alone / "video.safetensors")
    monkeypatch.chdir(tmp_path)  # no models/ here
    with pytest.raises(CodecLabError, match=r"needs its base model [0-9a-f]{16}, not found .*--models-dir") as err:
        load_model(moved)
    assert "\n" not in str(err.value)
    assert load_model(moved, [image.parent]).codec_id == "stem"
    monkeypatch.setenv("CODECLAB_MODELS", str(image.parent))
    assert load_model(moved).codec_id == "stem"
    monkeypatch.delenv("CODECLAB_MODELS")
    # The CLI: encode and decode take --models-dir for the base; a missing base is one line, exit 1.
    source = tmp_path / "clip.y4m"
    from fractions import Fraction

    from codeclab.data.colour import rgb_to_yuv420
    from codeclab.data.video import y4m_bytes

    source.write_bytes(y4m_bytes([rgb_to_yuv420(f) for f in _clip(frames=2).frames], Fraction(50), "limited"))
    refused = run_main("encode", source, "-m", moved, "-o", tmp_path / "a.clab", "--intra-period", "2")
    assert refused.returncode == 1 and "needs its base model" in refused.stderr and refused.stderr.count("\n") == 1
    assert not (tmp_path / "a.clab").exists()
    run_main("encode", source, "-m", moved, "-o", tmp_path / "a.clab", "--intra-period", "2", "--models-dir", image.parent,
             check=True)
    run_main("decode", tmp_path / "a.clab", "-o", tmp_path / "a.y4m", "--models-dir", alone, "--models-dir", image.parent,
             check=True)


def test_a_codec_whose_image_part_differs_from_the_base_is_not_exported_on_it(pair, tmp_path):
    _, image, _, _ = pair
    torch.manual_seed(1)
    with pytest.raises(CodecLabError, match="differs from base model"):
        export_model(stem(**SIZES, spatial="checkerboard"), tmp_path / "x.safetensors", base_model=image)
    assert not (tmp_path / "x.safetensors").exists()
    with pytest.raises(CodecLabError, match="has a base model itself"):
        export_model(load_model(pair[2]), tmp_path / "y.safetensors", base_model=pair[2])


@pytest.mark.parametrize("case", ["hash", "missing", "repeated", "alias", "based_base"])
def test_hostile_base_references_get_one_line_errors(pair, tmp_path, case):
    _, image, based, _ = pair
    target = tmp_path / "models" / "video.safetensors"
    target.parent.mkdir()
    (target.parent / "zoo").mkdir()
    shutil.copy(image, target.parent / "zoo" / "image.safetensors")
    with safe_open(str(image), framework="pt") as handle:
        a_weight = next(n for n in handle.keys() if n.startswith("g_a."))
        image_tensor = handle.get_tensor(a_weight)
    with safe_open(str(based), framework="pt") as handle:
        gain = handle.get_tensor("temporal_model.gain_bank.log_gain")
    if case == "hash":
        _rewrite(based, target, base_model="zz" * 32)
        expected = "base model hash is not 64 hex digits"
    elif case == "missing":
        _rewrite(based, target, base_model="ab" * 32)
        expected = "needs its base model abababababababab"
    elif case == "repeated":
        _rewrite(based, target, {a_weight: image_tensor})
        expected = f"tensor {a_weight} is in its base model too"
    elif case == "alias":  # the P-frame gains are the image codec's: a file may not change them
        _rewrite(based, target, {"temporal_model.gain_bank.log_gain": gain + 0.5})
        expected = "changes its base model's tensor"
    else:
        chained = target.parent / "zoo" / "chained.safetensors"
        shutil.copy(based, chained)
        _rewrite(based, target, base_model=model_sha256(read_header(chained).metadata))
        expected = "has a base model itself"
    with pytest.raises(CodecLabError, match=expected) as err:
        load_model(target)
    assert "\n" not in str(err.value)


def test_files_without_a_base_load_as_before():
    """Format-8 STEM files and every other model hold all their tensors: no base is looked for."""
    golden = ROOT / "tests" / "golden" / "video1-stem.safetensors"
    header = read_header(golden)
    assert BASE_MODEL not in header.metadata and int(header.metadata["format_version"]) < 9
    assert load_model(golden).codec_id == "stem"


def test_the_shipped_stem_names_the_shipped_image_model():
    """One copy of each network in models/: STEM's file holds its P-frame model only."""
    shipped, image = ROOT / "models" / "stem.safetensors", ROOT / "models" / "zoo" / "mbt2018_mean_vr.safetensors"
    header = read_header(shipped)
    assert header.metadata[BASE_MODEL] == model_sha256(read_header(image).metadata)
    assert all(name.startswith("temporal_model.") for name in header.specs)
