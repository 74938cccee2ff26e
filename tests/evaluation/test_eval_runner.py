"""The runner: learned ladders (with a fake model), classic codecs, real byte counts, cache."""

import zlib

import numpy as np
import pytest

from codeclab.evaluation.classic import PillowCodec
from codeclab.evaluation.runner import EvalImage, LearnedCurve, PointCache, evaluate
from tests.conftest import ROOT


def _images():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:170, 0:181]
    base = np.stack([x, y, x + y], -1).astype(float)
    a = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    return [EvalImage("a", a), EvalImage("b", np.ascontiguousarray(a[::-1]))]


class FakeModel:
    """A 'learned codec' that quantizes with a step read from its model file, then zlib."""

    def __init__(self, path):
        self.step = int(open(path).read())


class Calls:
    def __init__(self):
        self.load = self.encode = self.decode = 0


def _fake_curve(paths, calls):
    def load(path):
        calls.load += 1
        return FakeModel(path)

    def encode(model, image):
        calls.encode += 1
        q = (image // model.step).astype(np.uint8)
        return bytes([model.step]) + image.shape[0].to_bytes(2, "big") + zlib.compress(q.tobytes())

    def decode(data, model):
        calls.decode += 1
        h = int.from_bytes(data[1:3], "big")
        q = np.frombuffer(zlib.decompress(data[3:]), np.uint8).reshape(h, -1, 3)
        return (q.astype(int) * data[0] + data[0] // 2).clip(0, 255).astype(np.uint8)

    return LearnedCurve("fake", [str(p) for p in paths], load=load, encode=encode, decode=decode)


@pytest.fixture
def models(tmp_path):
    paths = []
    for step in (32, 16, 8, 4):
        paths.append(tmp_path / f"fake_q{step}.model")
        paths[-1].write_text(str(step))
    return paths


def test_learned_ladder_measures_real_bytes_and_caches(tmp_path, models):
    images, calls, cache = _images(), Calls(), PointCache(tmp_path / "cache")
    points = evaluate(images, learned=[_fake_curve(models, calls)], cache=cache, progress=False)
    assert len(points) == 8 and calls.load == 4 and calls.encode == 8 and calls.decode == 8
    p = points[0]
    model = FakeModel(models[0])
    nbytes = len(_fake_curve(models, Calls()).encode(model, images[0].pixels))
    assert p["bytes"] == nbytes and p["bpp"] == pytest.approx(nbytes * 8 / (170 * 181))
    assert p["image"] == "a" and p["curve"] == "fake" and p["kind"] == "learned"
    assert {"psnr-rgb", "ms-ssim-rgb", "ms-ssim-rgb-db", "psnr-y", "encoding_time",
            "decoding_time"} <= set(p)
    by_step = sorted(points, key=lambda q: q["bpp"])
    assert by_step[0]["psnr-rgb"] < by_step[-1]["psnr-rgb"]  # finer step: more bits, better

    # Re-run: nothing is recomputed; the records are identical.
    again = Calls()
    assert evaluate(images, learned=[_fake_curve(models, again)], cache=cache,
                    progress=False) == points
    assert again.load == again.encode == 0

    # A changed model file (same path) is measured again; only its points.
    models[0].write_text("64")
    changed = Calls()
    evaluate(images, learned=[_fake_curve(models, changed)], cache=cache, progress=False)
    assert changed.load == 1 and changed.encode == 2


def test_classic_in_process_pool_matches_serial(tmp_path):
    images = _images()
    jpeg = PillowCodec("JPEG", ladder=[20, 60], format="JPEG")
    serial = evaluate(images, [jpeg], workers=1, progress=False)
    pooled = evaluate(images, [jpeg], cache=PointCache(tmp_path), workers=2, progress=False)
    drop = ("encoding_time", "decoding_time")
    assert [{k: v for k, v in p.items() if k not in drop} for p in serial] == \
           [{k: v for k, v in p.items() if k not in drop} for p in pooled]
    order = [(p["setting"], p["image"]) for p in pooled]
    assert order == [(20, "a"), (20, "b"), (60, "a"), (60, "b")]


def test_cache_key_depends_on_codec_settings_and_pixels():
    img = _images()[0]
    k = PointCache.key({"class": "X", "q": 1}, 50, img.digest, True)
    assert k != PointCache.key({"class": "X", "q": 2}, 50, img.digest, True)
    assert k != PointCache.key({"class": "X", "q": 1}, 60, img.digest, True)
    assert k != PointCache.key({"class": "X", "q": 1}, 50, _images()[1].digest, True)
    assert EvalImage("renamed", img.pixels.copy()).digest == img.digest


def test_a_variable_rate_model_is_one_curve_over_its_levels(tmp_path, models):
    """One model file, several levels: one load, a point per level and image, level passed on."""
    calls, seen = Calls(), []
    curve = _fake_curve(models[:1], calls)
    plain = curve.encode

    def encode(model, image, level):
        seen.append(level)
        model.step = 32 >> level  # a finer step at a higher level
        return plain(model, image)

    curve.encode, curve.levels = encode, {curve.models[0]: [0, 3]}
    assert curve.settings() == [f"{curve.models[0]}@0", f"{curve.models[0]}@3"]
    points = evaluate(_images(), learned=[curve], cache=None, progress=False)
    assert calls.load == 1 and sorted(set(seen)) == [0, 3] and len(points) == 4
    by_level = {p["setting"]: p["bpp"] for p in points if p["image"] == "a"}
    assert by_level[f"{curve.models[0]}@3"] > by_level[f"{curve.models[0]}@0"]


def test_swept_levels_spread_evenly_with_both_ends():
    from codeclab.evaluation.run import swept_levels

    assert swept_levels(64, 8) == [0, 9, 18, 27, 36, 45, 54, 63]
    assert swept_levels(4, 8) == [0, 1, 2, 3]


def test_refine_reaches_the_encoder_and_the_cache_key(tmp_path, models):
    """eval.py refine=N: each image is encoded with refine=N, and refined points never reuse plain ones."""
    calls, seen = Calls(), []
    curve = _fake_curve(models[:1], calls)
    plain = curve.encode

    def encode(model, image, refine=0):
        seen.append(refine)
        return plain(model, image)

    curve.encode, curve.refine = encode, 7
    evaluate(_images(), learned=[curve], cache=None, progress=False)
    assert seen and set(seen) == {7}
    assert curve.identity(curve.models[0])["refine"] == 7
    assert "refine" not in _fake_curve(models[:1], Calls()).identity(curve.models[0])


def test_eval_config_refine_builds_refined_curves():
    from omegaconf import OmegaConf

    from codeclab.evaluation.run import learned_curves

    zoo = str(ROOT / "models" / "zoo" / "mbt2018_mean_vr.safetensors")
    cfg = OmegaConf.create({"model": zoo, "models": [], "name": "x", "coder": None, "learned": [], "rate_points": 4, "refine": 5})
    (curve,) = learned_curves(cfg)
    assert curve.refine == 5 and len(curve.levels[zoo]) == 4
    assert learned_curves(OmegaConf.merge(cfg, {"refine": 0}))[0].refine == 0
