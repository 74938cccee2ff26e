"""`python eval.py` end to end: a folder of images, a learned model, a classic codec, an anchor."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import skimage.data
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def model(tmp_path):
    torch = pytest.importorskip("torch")
    from codeclab.codecs import mbt2018_mean
    from codeclab.formats.model_file import export_model

    torch.manual_seed(0)
    path = tmp_path / "tiny.safetensors"
    export_model(mbt2018_mean(N=16, M=24).eval(), path)  # untrained, but real bytes
    return path


def test_eval_py_writes_report(tmp_path, model):
    images = tmp_path / "imgs"
    images.mkdir()
    photo = skimage.data.astronaut()
    # Sizes that are not multiples of 8 or 64 (portrait and landscape).
    Image.fromarray(photo[100:270, 150:353]).save(images / "wide.png")
    Image.fromarray(photo[20:225, 200:371]).save(images / "tall.png")
    anchor = tmp_path / "ref.json"
    anchor.write_text(json.dumps({"name": "ref", "results": {
        "bpp": [0.2, 0.5, 1.0, 2.0, 4.0], "psnr-rgb": [24.0, 27.0, 30.0, 34.0, 39.0]}}))
    out = tmp_path / "run"
    drop = [f"classic.codecs.{c}=null" for c in ("webp", "jpeg2000", "avif", "jpegxl", "hevc")]
    cmd = [sys.executable, "eval.py", f"test_dir={images}", f"model={model}", "name=tiny",
           "classic.codecs.jpeg.ladder=[10,30,60,90]", *drop, "workers=1", "progress=false",
           f"cache_dir={tmp_path / 'cache'}", f"+anchors.curves.Ref.path={anchor}",
           "bd.anchor=Ref", f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "BD-rate vs Ref" in proc.stdout

    points = json.loads((out / "points.json").read_text())
    assert {(p["curve"], p["image"]) for p in points} >= {("tiny", "wide"), ("JPEG", "tall")}
    assert len(points) == 2 * (1 + 4)
    learned = next(p for p in points if p["curve"] == "tiny")
    pixels = learned["height"] * learned["width"]
    assert learned["bpp"] == pytest.approx(learned["bytes"] * 8 / pixels)
    report = json.loads((out / "report.json").read_text())
    assert {c["name"]: c["kind"] for c in report["curves"]} == {
        "Ref": "anchor", "tiny": "learned", "JPEG": "classic"}
    bd = {r["curve"]: r for r in report["bd"]}
    assert bd["JPEG"]["bd_rate_cubic"] is not None
    assert bd["tiny"]["bd_rate_cubic"] is None and "1 points" in bd["tiny"]["note"]
    md = (out / "report.md").read_text()
    assert "| tiny | learned |" in md and "python eval.py" in md
    assert (out / "rd_psnr.png").stat().st_size > 10_000


def test_missing_or_empty_image_folder_is_a_one_line_error(tmp_path):
    from codeclab.errors import CodecLabError
    from codeclab.evaluation.run import load_images

    with pytest.raises(CodecLabError, match="test image folder .* does not exist"):
        load_images(str(tmp_path / "none"))
    with pytest.raises(CodecLabError, match="no images"):
        load_images(str(tmp_path))


def test_splits_choose_the_test_images_as_data_bsds500_val_does(tmp_path):
    from hydra import compose, initialize_config_dir

    from codeclab.errors import CodecLabError
    from codeclab.evaluation.run import load_images

    for name in ("a", "b", "c"):
        Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / f"{name}.png")
    (tmp_path / "SPLITS.txt").write_text("train a.png\nval b.png\nval c.png\n")
    assert [image.name for image in load_images(str(tmp_path), splits=["val"])] == ["b", "c"]
    assert [image.name for image in load_images(str(tmp_path), 1, ["val"])] == ["b"]
    with pytest.raises(CodecLabError, match="no images .* in splits \\['test'\\]"):
        load_images(str(tmp_path), splits=["test"])
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        held_apart = compose("eval", overrides=["data=bsds500_val"])
        kodak = compose("eval", overrides=["data=kodak"])
    assert list(held_apart.test_splits) == ["val"] and held_apart.test_dir.endswith("train/bsds500")
    assert kodak.test_splits is None


@pytest.mark.parametrize("override, message", [
    ("rate_points=0", "rate_points=0 must be an integer >= 2"),
    ("max_images=0", "max_images=0 must be an integer >= 1 or null"),
])
def test_settings_that_would_measure_nothing_are_refused(tmp_path, override, message):
    proc = subprocess.run([sys.executable, "eval.py", "classic=none", override, f"hydra.run.dir={tmp_path}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == f"eval.py: error: {message}"
    assert not (tmp_path / "report.md").exists()


def test_report_paths_name_the_project_or_home_folder_not_this_machine(tmp_path, monkeypatch):
    from codeclab.evaluation.run import _display_path

    monkeypatch.setenv("PROJECT_ROOT", str(tmp_path / "work" / "repo"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _display_path(str(tmp_path / "work" / "shared" / "data" / "kodak")) == "../shared/data/kodak"
    assert _display_path(str(tmp_path / "home" / ".cache" / "photos")) == "~/.cache/photos"
    assert _display_path("/elsewhere/images") == "/elsewhere/images"
