"""Held-apart validation: a folder's SPLITS.txt divides it into training and validation images."""

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from PIL import Image

from codeclab.data import ImageDataModule, list_images
from codeclab.errors import CodecLabError

ROOT = Path(__file__).resolve().parents[2]
SHARED_BSDS = ROOT.parent / "shared" / "data" / "train" / "bsds500"


def _folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    lines = []
    for i, split in enumerate(["train", "train", "test", "val", "val"]):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        lines.append(f"{split} {i}.png")
    (tmp_path / "SPLITS.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_list_images_keeps_only_the_named_splits(tmp_path):
    folder = _folder(tmp_path)
    assert [p.name for p in list_images(folder)] == ["0.png", "1.png", "2.png", "3.png", "4.png"]
    assert [p.name for p in list_images(folder, ["train", "test"])] == ["0.png", "1.png", "2.png"]
    assert [p.name for p in list_images(folder, ["val"])] == ["3.png", "4.png"]
    with pytest.raises(CodecLabError, match="no images .*in splits"):
        list_images(folder, ["nope"])


def test_splits_need_a_splits_file(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(CodecLabError, match="has no SPLITS.txt"):
        list_images(tmp_path, ["val"])


def test_datamodule_trains_and_validates_on_disjoint_images(tmp_path):
    folder = _folder(tmp_path)
    data = ImageDataModule(train_dir=str(folder), val_dir=str(folder), train_splits=["train", "test"], val_splits=["val"],
                           patch_size=32, val_patch_size=32, val_max_images=None)
    data.setup()
    assert [p.name for p in data.train_set.source.paths] == ["0.png", "1.png", "2.png"]
    assert [p.name for p in data.val_set.source.paths] == ["3.png", "4.png"] and len(data.val_set) == 2


def test_bsds500_config_holds_val_apart_and_tests_on_kodak():
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["data=bsds500", "paths.data_dir=/data"])
    assert cfg.data.train_dir == cfg.data.val_dir == "/data/train/bsds500"
    assert list(cfg.data.train_splits) == ["train", "test"] and list(cfg.data.val_splits) == ["val"]
    assert cfg.data.test_dir == "/data/kodak"


@pytest.mark.skipif(not (SHARED_BSDS / "SPLITS.txt").is_file(), reason="needs ../shared/data/train/bsds500")
def test_shared_bsds500_splits_are_400_training_and_100_validation_images():
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["data=bsds500", f"paths.data_dir={SHARED_BSDS.parents[1]}"])
    data = instantiate(cfg.data)
    train = list_images(data.train_dir, data.train_splits)
    val = list_images(data.val_dir, data.val_splits)
    assert (len(train), len(val)) == (400, 100) and not {p.name for p in train} & {p.name for p in val}
