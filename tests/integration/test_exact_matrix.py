"""Encode in one configuration, decode in another, in separate processes (tools/exact_matrix.py):
integer entropy parameters decode identically everywhere; the float path, the negative control,
provably breaks on the same model."""

import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

from codeclab.codecs import bmshj2018_hyperprior
from codeclab.entropy_models.gaussian import default_scale_table
from codeclab.formats.model_file import export_model
from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location("exact_matrix", ROOT / "tools" / "exact_matrix.py")
exact_matrix = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(exact_matrix)


def boundary_codec(N: int = 16, M: int = 16) -> torch.nn.Module:
    """A scale hyperprior whose predicted scales sit exactly on scale-table entries, as a table
    value plus terms that cancel exactly in real arithmetic (channels ``c`` and ``c + N/2`` are
    duplicates weighted ``+w`` and ``-w``). Float arithmetic lands each scale on either side of
    the entry depending on summation order, which is what moves table indexes between machines."""
    torch.manual_seed(0)
    codec = bmshj2018_hyperprior(N=N, M=M)
    h_s, half = codec.entropy_model.h_s, N // 2
    with torch.no_grad():
        h_s[2].weight[:, half:] = h_s[2].weight[:, :half]
        h_s[2].bias[half:] = h_s[2].bias[:half]
        w = torch.randn(M, half, 3, 3) * 3
        h_s[4].weight.copy_(torch.cat([w, -w], dim=1))
        h_s[4].bias.copy_(default_scale_table()[torch.randint(8, 56, (M,))])
    return codec.eval()


@pytest.fixture(scope="module")
def matrix_inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("matrix")
    rng = np.random.default_rng(0)
    images = []
    for i, (h, w) in enumerate([(128, 192), (70, 45)]):  # the second is odd-sized (padded)
        images.append(folder / f"img{i}.png")
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(images[-1])
    export_model(boundary_codec(), folder / "float.safetensors", arithmetic="float")
    export_model(boundary_codec(), folder / "integer.safetensors")
    return folder, [str(p) for p in images]


def test_quick_configurations_cover_every_factor_on_both_sides():
    for position, values in enumerate(exact_matrix.FACTORS.values()):
        assert {config.split("-")[position] for config in exact_matrix.QUICK} == set(values)
    assert len(exact_matrix.all_configs()) == 32


def test_integer_entropy_parameters_decode_identically_across_configurations(matrix_inputs):
    folder, images = matrix_inputs
    rows = exact_matrix.run_matrix(str(folder / "integer.safetensors"), images, exact_matrix.QUICK, [None], folder / "int")
    assert len(rows) == 4 * 4 * 2
    assert all(row["equal"] and row["error"] is None and row["max_abs_diff"] == 0.0 for row in rows), \
        [r for r in rows if not r["equal"]][:3]


def test_negative_control_float_path_breaks_across_configurations(matrix_inputs):
    folder, images = matrix_inputs
    rows = exact_matrix.run_matrix(str(folder / "float.safetensors"), images, exact_matrix.QUICK, [None], folder / "float")
    same = [r for r in rows if r["encode"] == r["decode"]]
    crossed = [r for r in rows if r["encode"] != r["decode"]]
    assert all(r["equal"] for r in same)  # each configuration decodes its own files
    broken = [r for r in crossed if not r["equal"]]
    assert len(broken) >= len(crossed) // 2
    # The end-of-stream check catches it: an error, never silently wrong latents.
    assert all(r["error"] for r in broken)


def test_complement_flips_every_factor():
    assert exact_matrix.complement("t1-dnn-nchw-fp32-f64") == "t2-nodnn-cl-bf16-i64"
    for config in exact_matrix.all_configs():
        assert exact_matrix.complement(exact_matrix.complement(config)) == config
