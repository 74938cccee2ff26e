"""Hostile model files, checkpoints and state_dicts (issue 26): refused in one line, before any
codec is built, with bounded memory; a config is part of the model hash."""

import json
import resource
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from codeclab.cli import main
from codeclab.codecs import mbt2018_mean, stem
from codeclab.errors import CodecLabError
from codeclab.formats import model_checks
from codeclab.formats.model_file import export_model, load_model, read_metadata, weights_sha256
from codeclab.formats.model_header import model_sha256
from tests.conftest import ROOT, rewrite_model_file

IMAGE = ROOT / "tests" / "golden" / "astronaut_97x131.png"
MEMORY_LIMIT = 3 << 30  # heap a refused file may use (RLIMIT_DATA: torch maps more address space)


@pytest.fixture
def exported(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "m.safetensors"
    export_model(mbt2018_mean(N=16, M=24), path)
    return path


def _rewrite(path, target, tensors=None, config=None):
    """The model file at ``path`` with tensors changed (``tensors(state)``) and config keys
    replaced, its weights hash recomputed (a consistent hostile file), written to ``target``."""
    def rehash(meta, state):
        if config:
            meta["config"] = json.dumps({**json.loads(meta["config"]), **config})
        meta["weights_sha256"] = weights_sha256(state)

    return rewrite_model_file(path, tensors, rehash, target)


def _limited():
    resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_LIMIT, MEMORY_LIMIT))


def _cli_in_bounded_memory(*args) -> str:
    """stderr of the CLI run in a process limited to :data:`MEMORY_LIMIT`, asserted a one-line error."""
    result = subprocess.run([sys.executable, "-m", "codeclab.cli", *map(str, args)], capture_output=True, text=True,
                            cwd=ROOT, preexec_fn=_limited, timeout=300)
    assert result.returncode == 1 and result.stderr.startswith("codeclab: error: "), result.stderr[-2000:]
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def _refused(capsys, *args) -> str:
    assert main([str(a) for a in args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("codeclab: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("config, message", [
    ({"N": 2048, "M": 2048}, "config.M = 2048 is outside [1, 1024]"),
    ({"rate_levels": 1_000_000_000}, "config.rate_levels = 1000000000 is outside [0, 1024]"),
])
def test_a_huge_config_is_refused_in_bounded_memory(exported, tmp_path, config, message):
    hostile = _rewrite(exported, tmp_path / "huge.safetensors", config=config)
    err = _cli_in_bounded_memory("encode", IMAGE, "-o", tmp_path / "x.clab", "-m", hostile)
    assert f"model file {hostile} is refused: {message}" in err


@pytest.mark.parametrize("config, tensors, message", [
    ({"scale_table_levels": 1}, None, "config.scale_table_levels = 1 is outside [2, 4096]"),
    ({"N": 1024, "M": 1024}, None, "tensor entropy_model.entropy_bottleneck.biases.0 has shape [16, 3, 1], the config asks for [1024, 3, 1]"),
    ({"lmbdas": [[[[[0.1]]]]]}, None, "config.lmbdas[0][0][0][0] is nested too deeply"),
    ({"N": "16"}, None, 'config.N = "16" is not an integer'),
    ({"N": True}, None, "config.N = true is not an integer"),
    ({"arithmetic": "none"}, None, "the codec refuses its config"),
    (None, lambda s: s.update({"g_a.0.weight": s["g_a.0.weight"][:8].clone()}), "tensor g_a.0.weight has shape [8, 3, 5, 5]"),
    (None, lambda s: s.pop("g_s.0.bias"), "missing tensor g_s.0.bias"),
    (None, lambda s: s.update(extra=torch.zeros(3)), "unexpected tensor extra"),
    (None, lambda s: s.update({"g_a.0.bias": s["g_a.0.bias"].double()}), "tensor g_a.0.bias is F64, not F32"),
    (None, lambda s: s.update({"entropy_model.gaussian_conditional._offset": torch.zeros(1 << 25, dtype=torch.int32)}),
     "the CDF tables have"),
])
def test_a_model_file_that_does_not_fit_its_config_is_refused(exported, tmp_path, capsys, config, tensors, message):
    hostile = _rewrite(exported, tmp_path / "hostile.safetensors", tensors=tensors, config=config)
    err = _refused(capsys, "encode", IMAGE, "-o", tmp_path / "x.clab", "-m", hostile)
    assert f"model file {hostile} is refused: {message}" in err


def test_non_monotone_tables_are_refused(exported, tmp_path, capsys):
    def swap(state):  # the tables are not hashed into the fingerprint: only their check sees this
        cdf = state["entropy_model.gaussian_conditional._quantized_cdf"]
        cdf[0, 1], cdf[0, 2] = int(cdf[0, 2]), int(cdf[0, 1])

    hostile = _rewrite(exported, tmp_path / "hostile.safetensors", tensors=swap)
    err = _refused(capsys, "encode", IMAGE, "-o", tmp_path / "x.clab", "-m", hostile)
    assert "bad entropy tables in entropy_model.gaussian_conditional: a cdf table is not strictly increasing" in err


GAUSSIAN_TABLES = [f"temporal_model.gaussian_conditional.{name}" for name in ("_quantized_cdf", "_offset", "_cdf_length")]


@pytest.mark.parametrize("tamper, message", [
    (lambda s: [s.update({k: s[k][:-1].clone()}) for k in [k for k in s if "_offset_" in k]],
     "1631 offset tables do not make K + 1 = 17 per scale for up to 256 scales"),
    (lambda s: [s.update({k: s[k][:-1].clone()}) for k in GAUSSIAN_TABLES], "255 scale tables for a scale table of 256"),
])
def test_stem_offset_tables_that_do_not_fit_are_refused(tmp_path, tamper, message):
    torch.manual_seed(0)
    path = tmp_path / "stem.safetensors"
    export_model(stem(N=8, M=12, rate_levels=4, scale_table_levels=256, spatial="checkerboard"), path)
    hostile = _rewrite(path, tmp_path / "hostile.safetensors", tensors=tamper)
    with pytest.raises(CodecLabError) as err:
        load_model(hostile)
    assert f"bad entropy tables in temporal_model.gaussian_conditional: {message}" in str(err.value)
    assert "\n" not in str(err.value)


def test_the_parameter_limit_is_checked_before_construction(exported, monkeypatch):
    monkeypatch.setattr(model_checks, "MAX_PARAMETERS", 1000)
    with pytest.raises(CodecLabError, match="is refused: the config asks for .* parameters, over the limit of 1,000"):
        load_model(exported)


def test_a_file_with_the_same_weights_and_another_config_is_another_model(exported, tmp_path, capsys):
    image = np.asarray(Image.open(IMAGE).convert("RGB"))
    Image.fromarray(image[:64, :64]).save(tmp_path / "in.png")
    other = tmp_path / "others"  # the bitstream's folder is searched too: the twin is the only candidate
    other.mkdir()
    assert main(["encode", str(tmp_path / "in.png"), "-o", str(other / "x.clab"), "-m", str(exported)]) == 0
    twin = _rewrite(exported, other / "twin.safetensors", config={"lmbda_max": 0.05})
    assert read_metadata(twin)["weights_sha256"] == read_metadata(exported)["weights_sha256"]
    assert model_sha256(read_metadata(twin)) != model_sha256(read_metadata(exported))
    err = _refused(capsys, "decode", other / "x.clab", "-o", tmp_path / "out.png")
    assert "no model with hash" in err
    (other / "model.safetensors").write_bytes(exported.read_bytes())
    assert main(["decode", str(other / "x.clab"), "-o", str(tmp_path / "out.png")]) == 0


def _checkpoint(path, config, state):
    torch.save({"hyper_parameters": {"codec_id": "mbt2018-mean", "codec_config": config},
                "state_dict": {f"codec.{k}": v for k, v in state.items()}}, path)
    return path


def test_a_checkpoint_with_a_huge_config_is_refused_in_bounded_memory(tmp_path):
    ckpt = _checkpoint(tmp_path / "huge.ckpt", {"N": 4096, "M": 4096}, {})
    err = _cli_in_bounded_memory("export", ckpt, "-o", tmp_path / "out.safetensors")
    assert f"checkpoint {ckpt} is refused: config.N = 4096 is outside [1, 1024]" in err


def test_a_compressai_state_dict_of_empty_huge_tensors_is_refused_in_bounded_memory(tmp_path):
    state = tmp_path / "state.pth"
    torch.save({"g_a.0.weight": torch.zeros(5000, 0, 5, 5), "g_a.6.weight": torch.zeros(5000, 0, 5, 5)}, state)
    err = _cli_in_bounded_memory("export", state, "--compressai", "bmshj2018-factorized", "-o", tmp_path / "out.safetensors")
    assert f"not a compressai bmshj2018-factorized state_dict: {state}: config.N = 5000 is outside [1, 1024]" in err


@pytest.mark.parametrize("content, message", [
    (b"", "not a CodecLab training checkpoint"),
    ("wrong shape", "tensor g_a.0.weight has shape [8, 3, 5, 5], the config asks for [16, 3, 5, 5]"),
    ("not tensors", "it holds something other than tensors"),
])
def test_a_broken_checkpoint_is_refused_in_one_line(tmp_path, capsys, content, message):
    ckpt = tmp_path / "bad.ckpt"
    torch.manual_seed(0)
    state = mbt2018_mean(N=16, M=24).state_dict()
    if content == "wrong shape":
        _checkpoint(ckpt, {"N": 16, "M": 24}, {**state, "g_a.0.weight": state["g_a.0.weight"][:8]})
    elif content == "not tensors":
        _checkpoint(ckpt, {"N": 16, "M": 24}, {**state, "g_a.0.weight": [1, 2]})
    else:
        ckpt.write_bytes(content)
    err = _refused(capsys, "export", ckpt, "-o", tmp_path / "out.safetensors")
    assert message in err
    assert not (tmp_path / "out.safetensors").exists()


def test_a_checkpoint_that_fits_its_config_exports(tmp_path):
    torch.manual_seed(0)
    codec = mbt2018_mean(N=16, M=24)
    ckpt = _checkpoint(tmp_path / "good.ckpt", {"N": 16, "M": 24}, codec.state_dict())
    assert main(["export", str(ckpt), "-o", str(tmp_path / "out.safetensors")]) == 0
    assert load_model(tmp_path / "out.safetensors").config["N"] == 16


@pytest.mark.parametrize("config, message", [
    ({"levels": 7}, "wavelet 'bior4.4' at 7 levels is too long a packet transform"),
    ({"wavelet": "db38", "levels": 5}, "wavelet 'db38' at 5 levels is too long a packet transform"),
])
def test_a_wavelet_packet_too_long_to_build_is_refused(tmp_path, capsys, config, message):
    """WaLLoC's packet kernels are built from the config in the constructor, on the CPU even on
    the meta device: levels 7 once took 75 s and 2 GB, db38 at 5 levels asked for 27 GB."""
    golden = ROOT / "tests" / "golden" / "format7-walloc-factorized.safetensors"
    hostile = _rewrite(golden, tmp_path / "hostile.safetensors", config=config)
    err = _refused(capsys, "encode", IMAGE, "-o", tmp_path / "x.clab", "-m", hostile)
    assert f"model file {hostile} is refused: the codec refuses its config ({message})" in err


def test_a_vqgan_config_without_levels_is_refused(tmp_path, capsys):
    """Found by the fuzz campaign (reports/fuzz): ch_mult [] once ended in an UnboundLocalError."""
    golden = ROOT / "tests" / "golden" / "vqgan.safetensors"
    hostile = _rewrite(golden, tmp_path / "hostile.safetensors", config={"ch_mult": []})
    err = _refused(capsys, "encode", IMAGE, "-o", tmp_path / "x.clab", "-m", hostile)
    assert f"model file {hostile} is refused: the codec refuses its config (ch_mult needs at least one level)" in err
