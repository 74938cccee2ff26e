"""One composition for every codec: transform pair + entropy model + coder.

Pins the compressai family to compressai (training and eval passes, same random draws), the
explicit training quantisation option, the registries, and that coding imports no training stack.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import compressai.models as cm
import pytest
import torch

from codeclab.codecs import CODECS, Codec, build_codec, compose, load_compressai_state_dict, to_compressai
from codeclab.coding import CODERS
from codeclab.entropy_models import ENTROPY_MODELS, INDEX_MODELS
from codeclab.entropy_models.hyperprior import HyperpriorEntropyModel
from codeclab.registry import UnknownName
from codeclab.transforms import TRANSFORMS

ROOT = Path(__file__).resolve().parents[2]
COMPRESSAI = {
    "bmshj2018-factorized": cm.FactorizedPrior,
    "bmshj2018-hyperprior": cm.ScaleHyperprior,
    "mbt2018-mean": cm.MeanScaleHyperprior,
}


def test_registries_hold_every_part():
    assert set(CODECS) == {
        "bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean", "mbt2018", "cheng2020-anchor", "cheng2020-attn",
        "elic", "s2lic", "mlicpp", "mlicv2", "walloc", "vqgan", "mcquic", "composed", "stem",
    }
    assert set(TRANSFORMS) == {"cnn", "cheng2020", "elic", "mcquic", "mlicpp", "mlicv2", "swinv2", "walloc", "vqgan"}
    assert set(ENTROPY_MODELS) == {
        "factorized", "scale_hyperprior", "hyperprior", "autoregressive", "checkerboard", "charm", "acgc", "elic",
        "mlicpp", "mlicv2", "bounded", "vq", "mcquic", "spatiotemporal",
    }
    assert set(INDEX_MODELS) == {"uniform", "static", "transformer"}
    assert set(CODERS) == {"codeclab", "compressai"}
    with pytest.raises(UnknownName, match="unknown entropy model 'nope'; available: acgc, autoregressive, bounded"):
        ENTROPY_MODELS["nope"]


@pytest.mark.parametrize("codec_id", sorted(COMPRESSAI))
@pytest.mark.parametrize("training", [True, False])
def test_compressai_family_reproduces_compressai_exactly(codec_id, training):
    """Same weights, same seed: identical x_hat and likelihoods, in training (noise) and eval mode."""
    torch.manual_seed(0)
    reference = COMPRESSAI[codec_id](N=16, M=24)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.05 * torch.randn_like(p))
    codec = load_compressai_state_dict(build_codec(codec_id, {"N": 16, "M": 24}), reference.state_dict())
    reference.train(training), codec.train(training)
    x = torch.rand(2, 3, 64, 64)
    torch.manual_seed(1)
    ours = codec(x)
    torch.manual_seed(1)
    theirs = reference(x)
    assert torch.equal(ours["x_hat"], theirs["x_hat"])
    assert ours["likelihoods"].keys() == theirs["likelihoods"].keys()
    for name in theirs["likelihoods"]:
        assert torch.equal(ours["likelihoods"][name], theirs["likelihoods"][name])
    assert torch.equal(codec.aux_loss(), reference.aux_loss())
    assert to_compressai(codec).keys() == reference.state_dict().keys()


@pytest.mark.parametrize("quantizer", ["noise", "ste"])
def test_training_quantisation_is_an_explicit_option(quantizer):
    torch.manual_seed(0)
    model = HyperpriorEntropyModel(8, 12, quantizer=quantizer).train()
    y = (3 * torch.randn(1, 12, 8, 8)).requires_grad_()
    torch.manual_seed(5)
    y_hat = model(y)["y_hat"]
    torch.manual_seed(5)  # the same noisy z_hat, so the same means
    means = model.h_s(model.entropy_bottleneck(model.h_a(y))[0]).chunk(2, 1)[1]
    offsets = (y_hat - y).detach()
    if quantizer == "noise":
        assert offsets.abs().max() <= 0.5 and not torch.equal(offsets, torch.zeros_like(offsets))
    else:
        # round(y - mu) + mu: y_hat - mu is an integer wherever mu was not rounded away.
        assert offsets.abs().max() <= 0.5 + 1e-5
        residual = (y_hat - means).detach()
        assert torch.allclose(residual, residual.round(), atol=1e-4)
    y_hat.sum().backward()
    assert torch.all(y.grad != 0)


def test_compose_builds_any_transform_with_any_entropy_model():
    entropy = {"name": "charm", "N": 8, "M": 20, "hidden": 8}
    codec = compose(transform={"name": "cnn", "N": 8, "M": 20}, entropy=entropy)
    assert codec.codec_id == "composed" and codec.downsampling == 64
    assert json.loads(json.dumps(codec.config)) == codec.config
    rebuilt = build_codec(codec.codec_id, codec.config)
    rebuilt.load_state_dict(codec.state_dict())
    x = torch.rand(1, 3, 64, 128)
    codec.eval(), rebuilt.eval()
    compressed = codec.compress(x)
    assert torch.equal(rebuilt.decode_latents(compressed.strings, compressed.size), codec.encode_latents(x))


def test_every_codec_is_the_one_composition():
    for codec_id in ("bmshj2018-factorized", "mbt2018-mean", "walloc", "vqgan", "mcquic"):
        with torch.device("meta"):
            codec = build_codec(codec_id, {})
        assert type(codec) in (Codec, *Codec.__subclasses__())
        assert {name for name, _ in codec.named_children()} == {"g_a", "g_s", "entropy_model"}


CODING_PATH_FORBIDDEN = ("compressai", "torchvision", "pytorch_lightning", "lightning", "hydra", "omegaconf")


def test_coding_path_imports_no_training_stack(tmp_path):
    golden = ROOT / "tests" / "golden"
    script = f"""
import sys
from codeclab.cli import main
assert main(["encode", "{golden}/astronaut_97x131.png", "-m", "{golden}/s2lic-acgc.safetensors", "-o", "{tmp_path}/a.clab"]) == 0
assert main(["decode", "{tmp_path}/a.clab", "-o", "{tmp_path}/a.png", "-m", "{golden}/s2lic-acgc.safetensors"]) == 0
assert main(["info", "{tmp_path}/a.clab"]) == 0
assert main(["decode", "{golden}/walloc-bounded.clab", "-o", "{tmp_path}/b.png", "-m", "{golden}/walloc-bounded.safetensors"]) == 0
assert main(["decode", "{golden}/vqgan-transformer.clab", "-o", "{tmp_path}/c.png", "-m", "{golden}/vqgan.safetensors"]) == 0
print(sorted({{m.split(".")[0] for m in sys.modules}} & set({CODING_PATH_FORBIDDEN!r})))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


# Layers of the package, lowest first: a module may import only from its own layer or lower ones.
LAYERS = [
    {"errors", "registry", "measures", "files", "progress"},
    {"coding"},
    {"transforms"},
    {"entropy_models"},
    {"codecs"},
    {"data"},
    {"formats"},
    {"cli", "evaluation", "training"},
]


def _layer(module: str) -> int:
    top = module.split(".")[1] if module.count(".") else module
    return next(i for i, names in enumerate(LAYERS) if top in names)


def _imports(path: Path, module: str):
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if base.startswith("codeclab"):
                yield base, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("codeclab"):
                    yield alias.name, []


def test_dependencies_run_one_way_and_no_private_names_cross_modules():
    problems = []
    for path in sorted((ROOT / "codeclab").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        if module == "codeclab":
            continue
        for target, names in _imports(path, module):
            if target == "codeclab":
                continue
            if _layer(target) > _layer(module):
                problems.append(f"{module} imports {target} (a higher layer)")
            same_package = target.rsplit(".", 1)[0] == module.rsplit(".", 1)[0] or target == module.rsplit(".", 1)[0]
            private = [n for n in names if n.startswith("_") and not same_package]
            if private:
                problems.append(f"{module} imports private {private} from {target}")
    assert problems == []
