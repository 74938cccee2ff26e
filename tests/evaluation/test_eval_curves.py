"""Reading and writing RD curves (CompressAI JSON, flat JSON, two-column text)."""

import json

import numpy as np
import pytest

from codeclab.errors import CodecLabError
from codeclab.evaluation.curves import RDCurve, read_curve, write_compressai_json

TFC_TEXT = """# Aggregate rate-distortion data for "BPG (4:4:4)" on kodak.
# The first column contains bits per pixel (bpp) values.

0.50, 33.0
0.10, 27.0
0.25, 30.0
"""


def test_compressai_json(tmp_path):
    doc = {"name": "VTM", "results": {"psnr-rgb": [30, 27], "ms-ssim-rgb": [0.97, 0.9],
                                      "bpp": [0.3, 0.1], "encoding_time": [1, 2]}}
    (tmp_path / "vtm.json").write_text(json.dumps(doc))
    c = read_curve(tmp_path / "vtm.json")
    assert c.name == "VTM" and list(c.bpp) == [0.1, 0.3]  # sorted by rate
    assert list(c.metrics["psnr-rgb"]) == [27, 30] and set(c.metrics) == {"psnr-rgb", "ms-ssim-rgb"}
    assert c.quality("ms-ssim-rgb-db") == pytest.approx(-10 * np.log10(1 - np.array([0.9, 0.97])))


def test_flat_json_and_name_override(tmp_path):
    (tmp_path / "kodak-vtm18.0.json").write_text(json.dumps({"bpp": [0.1, 0.2], "psnr": [27, 29]}))
    c = read_curve(tmp_path / "kodak-vtm18.0.json", name="VTM-18")
    assert c.name == "VTM-18" and list(c.metrics["psnr-rgb"]) == [27, 29]


def test_two_column_text_takes_title_and_folder_metric(tmp_path):
    folder = tmp_path / "MS-SSIM_sRGB_RGB"
    folder.mkdir()
    (folder / "bpg444.txt").write_text(TFC_TEXT)
    (tmp_path / "plain.txt").write_text("0.1 27\n0.2 29\n")
    c = read_curve(folder / "bpg444.txt")
    assert c.name == "BPG (4:4:4)" and list(c.bpp) == [0.1, 0.25, 0.5]
    assert "ms-ssim-rgb" in c.metrics
    plain = read_curve(tmp_path / "plain.txt")
    assert plain.name == "plain" and list(plain.metrics["psnr-rgb"]) == [27, 29]


def test_write_then_read_round_trip(tmp_path):
    c = RDCurve("mine", np.array([0.2, 0.4]), {"psnr-rgb": np.array([30.0, 33.0])})
    write_compressai_json(c, tmp_path / "mine.json", extra={"encoding_time": [0.1, 0.2]})
    doc = json.loads((tmp_path / "mine.json").read_text())
    assert doc["results"]["encoding_time"] == [0.1, 0.2]
    back = read_curve(tmp_path / "mine.json")
    assert back.name == "mine" and list(back.metrics["psnr-rgb"]) == [30.0, 33.0]


@pytest.mark.parametrize("content, message", [
    (None, "cannot read curve"),
    ("{not json", "invalid JSON"),
    ('{"results": {"psnr-rgb": [1]}}', "no 'bpp'"),
    ('{"bpp": [0.1, 0.2], "psnr": [1]}', "has 1 values"),
    ('{"bpp": [0.1]}', "no PSNR"),
    ("0.1, x\n", "cannot read line"),
    ("# only comments\n", "no 'bpp, value' rows"),
])
def test_unreadable_curves_raise_one_line_errors(tmp_path, content, message):
    path = tmp_path / "c.txt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CodecLabError, match=message) as err:
        read_curve(path)
    assert "\n" not in str(err.value)
