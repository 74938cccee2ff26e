"""``codeclab export --onnx``: the exported networks, run by ONNX Runtime, compute what PyTorch does."""

import pytest
import torch

from codeclab.cli import main
from codeclab.codecs import bmshj2018_factorized, mbt2018, mbt2018_mean
from codeclab.formats.model_file import export_model, load_model
from codeclab.formats.onnx_export import max_abs_differences

onnxruntime = pytest.importorskip("onnxruntime")


def _export(codec, tmp_path):
    model = tmp_path / "m.safetensors"
    export_model(codec, model)
    assert main(["export", str(model), "--onnx", "-o", str(tmp_path / "onnx")]) == 0
    return load_model(model), tmp_path / "onnx"


def test_variable_rate_hyperprior_matches_pytorch_at_any_size(tmp_path):
    torch.manual_seed(0)
    codec, folder = _export(mbt2018_mean(N=8, M=12, rate_levels=4, arithmetic="integer"), tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["g_a.onnx", "g_s.onnx", "h_a.onnx", "h_s.onnx"]
    x = torch.rand(1, 3, 64, 128)
    differences = max_abs_differences(codec, folder, x, level=3)
    assert set(differences) == {"g_a", "g_s", "h_a", "h_s", "h_s_vs_integer"}
    for name in ("g_a", "g_s", "h_a", "h_s"):  # float32 against float32: rounding only
        assert differences[name]["max_abs_diff"] <= 1e-5 * max(1.0, differences[name]["max_abs_value"]), name
    # The float h_s is not the exact integer one that decoding uses; close, not equal.
    assert 0 < differences["h_s_vs_integer"]["max_abs_diff"] < 0.1
    # Height and width are dynamic: another size runs, and gives the same as PyTorch.
    session = onnxruntime.InferenceSession(str(folder / "g_a.onnx"), providers=["CPUExecutionProvider"])
    other = torch.rand(2, 3, 128, 64)
    (y,) = session.run(None, {"x": other.numpy()})
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(y), codec.g_a(other), atol=1e-4)


def test_factorized_exports_its_transforms(tmp_path, capsys):
    torch.manual_seed(0)
    codec, folder = _export(bmshj2018_factorized(N=8, M=12), tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["g_a.onnx", "g_s.onnx"]
    differences = max_abs_differences(codec, folder, torch.rand(1, 3, 32, 48))
    assert max(d["max_abs_diff"] for d in differences.values()) < 1e-4
    not_a_folder = tmp_path / "file"
    not_a_folder.write_bytes(b"x")
    assert main(["export", str(tmp_path / "m.safetensors"), "--onnx", "-o", str(not_a_folder)]) == 1
    assert capsys.readouterr().err == f"codeclab: error: cannot write {not_a_folder}: it is a file, not a folder\n"


def test_context_models_are_refused_in_one_line(tmp_path, capsys):
    model = tmp_path / "m.safetensors"
    export_model(mbt2018(N=8, M=12), model, arithmetic="float")
    assert main(["export", str(model), "--onnx", "-o", str(tmp_path / "onnx")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("codeclab: error: ONNX export covers bmshj2018-factorized") and err.count("\n") == 1
    assert not (tmp_path / "onnx").exists()
