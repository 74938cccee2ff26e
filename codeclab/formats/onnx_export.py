"""ONNX export of the networks of the hyperprior family (``codeclab export --onnx``).

One file per network, float32, NCHW, batch, height and width dynamic:

* ``g_a.onnx``: image ``x`` ``[B, 3, H, W]`` (0..1, H and W multiples of the codec's
  downsampling) -> latent ``y``;
* ``g_s.onnx``: quantised latent ``y_hat`` -> reconstruction ``x_hat``;
* hyperprior models also ``h_a.onnx``: ``y`` -> side latent ``z`` (``|y|`` taken inside for
  bmshj2018-hyperprior), and ``h_s.onnx``: quantised ``z_hat`` -> the entropy parameters
  (scales; mbt2018-mean: scales then means along the channels, ``2M``).

What stays in CodecLab: quantisation and entropy coding, the factorized density of ``z``, the
Gaussian conditional's tables and the variable-rate gains, which act there (``y`` is scaled by
the level's gain before rounding), so the networks are the same at every rate level. An integer
``h_s`` (``arithmetic=integer``, the default) is exported as the float network of the same weights:
ONNX Runtime has no float64 convolution to hold its exact integers, so entropy parameters from
``h_s.onnx`` are approximate and must not drive a decoder; files decode exactly only through
CodecLab.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from torch import nn

from ..codecs import Codec
from ..codecs.base import with_arithmetic
from ..entropy_models.integer import INTEGER_ARITHMETICS
from ..errors import CodecLabError
from ..files import write_atomically

ONNX_CODECS = ("bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean")
OPSET = 17


class _SideLatent(nn.Module):
    """``z`` from ``y`` as the entropy model computes it (``h_a`` of ``|y|`` or of ``y``)."""

    def __init__(self, entropy_model: nn.Module):
        super().__init__()
        self.entropy_model = entropy_model

    def forward(self, y):
        return self.entropy_model.side_latent(y)


def onnx_networks(codec: Codec) -> dict[str, tuple[nn.Module, str, str, int]]:
    """``name -> (float32 network, input name, output name, input channels)`` of ``codec``."""
    if codec.codec_id not in ONNX_CODECS:
        raise CodecLabError(f"ONNX export covers {', '.join(ONNX_CODECS)}; not {codec.codec_id!r}")
    if getattr(codec.entropy_model, "arithmetic", "float") in INTEGER_ARITHMETICS:
        codec = with_arithmetic(codec, "float")  # see the module docstring
    codec = codec.eval()
    model = codec.entropy_model
    networks = {"g_a": (codec.g_a, "x", "y", 3), "g_s": (codec.g_s, "y_hat", "x_hat", model.M)}
    if hasattr(model, "h_s"):
        networks["h_a"] = (_SideLatent(model), "y", "z", model.M)
        networks["h_s"] = (model.h_s, "z_hat", "entropy_parameters", model.N)
    return networks


def _export(network: nn.Module, input_name: str, output_name: str, channels: int, path: str) -> None:
    axes = {0: "batch", 2: "height", 3: "width"}
    with torch.no_grad():
        torch.onnx.export(network, (torch.zeros(1, channels, 64, 64),), path, dynamo=False, opset_version=OPSET,
                          input_names=[input_name], output_names=[output_name],
                          dynamic_axes={input_name: axes, output_name: axes})


def export_onnx(codec: Codec, folder: str | Path) -> list[Path]:
    """Write one ONNX file per network of ``codec`` (:func:`onnx_networks`) into ``folder``."""
    folder = Path(folder)
    networks = onnx_networks(codec)
    if folder.exists() and not folder.is_dir():
        raise CodecLabError(f"ONNX output {folder} exists and is not a folder")
    paths = [folder / f"{name}.onnx" for name in networks]
    for path, spec in zip(paths, networks.values()):
        write_atomically(path, partial(_export, *spec))
    return paths


def max_abs_differences(codec: Codec, folder: str | Path, x: torch.Tensor, level: int | None = None) -> dict[str, dict]:
    """How far each ONNX network in ``folder`` (run by ONNX Runtime) is from the same float32
    network in PyTorch, on image ``x`` ``[1, 3, H, W]`` (H and W multiples of the downsampling)
    and the latents CodecLab codes from it at ``level``: ``{name: {"max_abs_diff", "max_abs_value"}}``
    (the second: of PyTorch's output, for scale). With an integer ``h_s``, ``h_s_vs_integer``
    compares ``h_s.onnx`` with the exact network that decoding uses."""
    import onnxruntime

    from ..entropy_models.latent_coding import quantize_factorized

    networks = onnx_networks(codec)
    model = codec.entropy_model
    with torch.no_grad():
        y = codec.g_a(x)
        inputs = {"g_a": x, "g_s": codec.quantize(x, level), "h_a": y}
        references = {}
        if "h_s" in networks:
            inputs["h_s"] = quantize_factorized(model.entropy_bottleneck, model.side_latent(y))
            if networks["h_s"][0] is not model.h_s:
                references["h_s_vs_integer"] = ("h_s", model.h_s(inputs["h_s"]))
        outputs, differences = {}, {}
        for name, (network, input_name, _, _) in networks.items():
            session = onnxruntime.InferenceSession(str(Path(folder) / f"{name}.onnx"), providers=["CPUExecutionProvider"])
            outputs[name] = torch.from_numpy(session.run(None, {input_name: inputs[name].numpy()})[0])
            references[name] = (name, network(inputs[name]))
        for key, (name, reference) in references.items():
            differences[key] = {"max_abs_diff": (outputs[name] - reference).abs().max().item(),
                                "max_abs_value": reference.abs().max().item()}
    return differences
