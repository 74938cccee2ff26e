"""The compatibility wing (codeclab.compat): old model files build the compat classes, chosen by
their codec and format version alone, and the live classes keep one architecture each."""

import inspect
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from codeclab.codecs import cheng2020_anchor, cheng2020_attn, compose, s2lic, walloc
from codeclab.coding import get_coder
from codeclab.compat import migrate_config
from codeclab.compat.entropy_models import (
    ACGCEntropyModelV1,
    AutoregressiveEntropyModelV1,
    BoundedLatentImageV1,
    ChannelwiseEntropyModelV1,
)
from codeclab.compat.transforms import WaLLoCSynthesisV1, swin_v1_transforms
from codeclab.entropy_models.acgc import ACGCEntropyModel
from codeclab.entropy_models.autoregressive import AutoregressiveEntropyModel
from codeclab.entropy_models.bounded import BoundedLatentImage
from codeclab.entropy_models.channelwise import ChannelwiseEntropyModel
from codeclab.entropy_models.mixture import GaussianMixtureConditional
from codeclab.formats.model_file import export_model, load_model
from codeclab.transforms.swin import swin_transforms
from codeclab.transforms.wavelet import WaLLoCSynthesis, walloc_transforms

CODER = get_coder()

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
ROOT = GOLDEN.parents[1]

# What each golden (format-1) model file builds: (entropy model class, g_s class or None for any).
FIRST_VERSIONS = {
    "s2lic-acgc.safetensors": ACGCEntropyModelV1,
    "s2lic-charm.safetensors": ChannelwiseEntropyModelV1,
    "walloc-bounded.safetensors": BoundedLatentImageV1,
}


@pytest.mark.parametrize("name", sorted(FIRST_VERSIONS))
def test_golden_files_build_the_compat_classes(name):
    codec = load_model(GOLDEN / name)
    assert type(codec.entropy_model) is FIRST_VERSIONS[name]
    if name.startswith("walloc"):
        assert type(codec.g_s) is WaLLoCSynthesisV1
    else:  # S2LIC's first transforms: a dense enhancement block after the first convolution
        assert type(codec.g_a[1]).__name__ == "DenseFeatureEnhancement"


def test_migration_dispatches_on_codec_and_format_not_on_config_keys():
    """The keys that were sniffed before (``bottleneck``, ``components``, ``transform``) mean
    nothing to another codec, and a current-format config is taken as it is."""
    config = {"N": 8, "M": 16, "bottleneck": "bounded", "components": 3, "transform": "swinv2"}
    assert migrate_config("mbt2018-mean", 1, config) == config
    current = {"levels": 2, "bottleneck": "bounded", "transform": "walloc"}
    assert migrate_config("walloc", 7, current) == current
    old = migrate_config("walloc", 2, {"levels": 2, "bottleneck": "bounded", "decoder_blocks": 2})
    assert old == {"levels": 2, "bottleneck": "bounded_v1", "lossless_format": "png",
                   "transform": {"name": "walloc_v1", "decoder_blocks": 2}}
    assert migrate_config("walloc", 3, {"bottleneck": "bounded", "decoder_blocks": 2, "mapping": "walloc"})["bottleneck"] == "bounded"
    assert migrate_config("cheng2020-attn", 4, {"N": 16})["entropy"] == "autoregressive_v1"
    assert migrate_config("cheng2020-attn", 5, {"N": 16, "mixture_layout": "official"})["entropy"] == "autoregressive"
    first = {"levels": 2, "bottleneck": "bounded_v1", "transform": {"name": "walloc_v1", "decoder_blocks": 2}}
    assert migrate_config("walloc", 7, first) == first  # a re-exported old model keeps its parts
    s2 = migrate_config("s2lic", 2, {"M": 24, "transform": "swinv2", "growth": 4, "entropy": {"name": "checkerboard"}})
    assert s2 == {"M": 24, "transform": {"name": "swinv2_v1", "growth": 4}, "entropy": {"name": "checkerboard", "hidden": 64}}
    s6 = migrate_config("s2lic", 6, {"M": 24, "transform": "swinv2", "growth": 32, "layout": "s2lic",
                                     "entropy": {"name": "acgc", "architecture": "s2lic", "heads": 4, "attention_dim": None}})
    assert s6 == {"M": 24, "transform": "swinv2", "entropy": {"name": "acgc"}}


def _as_format(path: Path, out: Path, version: str, config: dict) -> Path:
    """The model file at ``path`` as a file of ``version`` with ``config`` (same tensors, same hash)."""
    with safe_open(str(path), framework="pt") as handle:
        state, metadata = {k: handle.get_tensor(k) for k in handle.keys()}, handle.metadata()
    save_file(state, str(out), metadata={**metadata, "format_version": version, "config": json.dumps(config)})
    return out


def test_a_composed_file_of_format_2_loads_with_its_first_architectures(tmp_path):
    """Before, sniffing ``transform`` took a composed file for S2LIC and gave it ``layout="legacy"``,
    which compose() refused."""
    torch.manual_seed(0)
    sizes = {"N": 8, "M": 20}
    swin = {"window": 4, "depths": [1, 1, 1], "heads": [1, 1, 2], "growth": 4}
    codec = compose({"name": "swinv2_v1", **sizes, **swin}, {"name": "charm_v1", **sizes, "num_slices": 2, "hidden": 8})
    path = tmp_path / "now.safetensors"
    export_model(codec, path, arithmetic="float")
    old = {"transform": {"name": "swinv2", **sizes, **swin}, "entropy": {"name": "charm", **sizes, "num_slices": 2, "hidden": 8}}
    loaded = load_model(_as_format(path, tmp_path / "old.safetensors", "2", old))
    assert type(loaded.entropy_model) is ChannelwiseEntropyModelV1
    x = torch.rand(1, 3, 64, 64)
    assert loaded.compress(x, CODER).strings == load_model(path).compress(x, CODER).strings


def test_old_files_reexport_as_the_current_format_and_keep_their_architecture(tmp_path):
    first = load_model(GOLDEN / "s2lic-acgc.safetensors")
    path = tmp_path / "again.safetensors"
    export_model(first, path, arithmetic="float")
    again = load_model(path)
    assert type(again.entropy_model) is ACGCEntropyModelV1 and again.config["entropy"]["name"] == "acgc_v1"
    x = torch.rand(1, 3, 64, 64)
    assert again.compress(x, CODER).strings == first.compress(x, CODER).strings


# The switches back to CodecLab's first versions that lived in the live classes until format 7.
SWITCHES = {"architecture", "layout", "mixture_layout", "mapping", "decoder", "decoder_blocks", "growth",
            "attention_dim", "input_bits", "input_scale"}


@pytest.mark.parametrize("live", [
    ACGCEntropyModel, ChannelwiseEntropyModel, AutoregressiveEntropyModel, GaussianMixtureConditional,
    BoundedLatentImage, WaLLoCSynthesis, swin_transforms, walloc_transforms, s2lic, walloc, cheng2020_anchor,
    cheng2020_attn,
])
def test_live_classes_take_no_switch_back_to_a_first_version(live):
    assert not SWITCHES & set(inspect.signature(live).parameters)


def test_no_legacy_branch_is_left_in_the_live_packages():
    for package in ("entropy_models", "transforms", "codecs"):
        for path in (ROOT / "codeclab" / package).glob("*.py"):
            assert "legacy" not in path.read_text().lower(), path


def test_compat_classes_subclass_the_live_ones():
    for first, live in ((ACGCEntropyModelV1, ACGCEntropyModel), (ChannelwiseEntropyModelV1, ChannelwiseEntropyModel),
                        (AutoregressiveEntropyModelV1, AutoregressiveEntropyModel),
                        (BoundedLatentImageV1, BoundedLatentImage), (WaLLoCSynthesisV1, WaLLoCSynthesis)):
        assert issubclass(first, live)
    assert swin_v1_transforms(8, 16, 4, [1, 1, 1], [1, 1, 2], 4).stride == 16
