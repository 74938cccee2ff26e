"""One composition for every codec: transform pair + entropy model + coder.

Pins the compressai family to compressai (training and eval passes, same random draws), the
explicit training quantisation option, the registries, that coding imports no training stack
and that reading headers (``codeclab info``) imports no torch.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import compressai.models as cm
import pytest
import torch

import codeclab.compat  # noqa: F401  (registers the first versions older model files build)
from codeclab.codecs import CODECS, Codec, build_codec, compose, load_compressai_state_dict, to_compressai
from codeclab.coding import CODERS, get_coder
from codeclab.entropy_models import ENTROPY_MODELS, INDEX_MODELS
from codeclab.entropy_models.hyperprior import HyperpriorEntropyModel
from codeclab.registry import UnknownName
from codeclab.transforms import TRANSFORMS

ROOT = Path(__file__).resolve().parents[2]
CODER = get_coder()
COMPRESSAI = {
    "bmshj2018-factorized": cm.FactorizedPrior,
    "bmshj2018-hyperprior": cm.ScaleHyperprior,
    "mbt2018-mean": cm.MeanScaleHyperprior,
}


def test_registries_hold_every_part():
    assert set(CODECS) == {
        "bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean", "mbt2018", "cheng2020-anchor", "cheng2020-attn",
        "elic", "s2lic", "mlicpp", "mlicv2", "walloc", "vqgan", "mcquic", "composed", "stem", "pc-lossless",
    }
    assert set(TRANSFORMS) == {
        "cnn", "cheng2020", "elic", "mcquic", "mlicpp", "mlicv2", "swinv2", "walloc", "vqgan",
        "swinv2_v1", "walloc_v1",  # codeclab.compat: first versions, which older model files build
    }
    assert set(ENTROPY_MODELS) == {
        "factorized", "scale_hyperprior", "hyperprior", "autoregressive", "checkerboard", "charm", "acgc", "elic",
        "mlicpp", "mlicv2", "bounded", "vq", "mcquic", "spatiotemporal", "hclt",
        "acgc_v1", "autoregressive_v1", "bounded_v1", "charm_v1",  # codeclab.compat
    }
    assert set(INDEX_MODELS) == {"uniform", "static", "transformer"}
    assert set(CODERS) == {"codeclab", "compressai"} == set(CODERS.wire_ids)
    with pytest.raises(UnknownName, match="unknown entropy model 'nope'; available: acgc, acgc_v1, autoregressive, autoregressive_v1, bounded"):
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
    compressed = codec.compress(x, CODER)
    assert torch.equal(rebuilt.decompress_y(compressed.strings, compressed.size, CODER), codec.quantize(x))


def test_every_codec_is_the_one_composition():
    for codec_id in ("bmshj2018-factorized", "mbt2018-mean", "walloc", "vqgan", "mcquic"):
        with torch.device("meta"):
            codec = build_codec(codec_id, {})
        assert type(codec) in (Codec, *Codec.__subclasses__())
        assert {name for name, _ in codec.named_children()} == {"g_a", "g_s", "entropy_model"}


CODING_PATH_FORBIDDEN = ("compressai", "torchvision", "pytorch_lightning", "lightning", "hydra", "omegaconf", "scipy", "matplotlib")


def test_coding_path_imports_no_training_stack(tmp_path):
    golden = ROOT / "tests" / "golden"
    script = f"""
import sys
from codeclab.cli import main
assert main(["encode", "{golden}/astronaut_97x131.png", "-m", "{golden}/s2lic-acgc.safetensors", "-o", "{tmp_path}/a.clab"]) == 0
assert main(["decode", "{tmp_path}/a.clab", "-o", "{tmp_path}/a.png", "-m", "{golden}/s2lic-acgc.safetensors"]) == 0
assert main(["info", "{tmp_path}/a.clab"]) == 0
assert main(["decode", "{golden}/walloc-bounded.clab", "-o", "{tmp_path}/b.png", "-m", "{golden}/walloc-bounded.safetensors"]) == 0
assert main(["encode", "{golden}/astronaut_97x131.png", "-m", "{golden}/vqgan.safetensors", "-o", "{tmp_path}/c.clab"]) == 0
assert main(["decode", "{tmp_path}/c.clab", "-o", "{tmp_path}/c.png", "-m", "{golden}/vqgan.safetensors"]) == 0
print(sorted({{m.split(".")[0] for m in sys.modules}} & set({CODING_PATH_FORBIDDEN!r})))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_info_imports_no_torch(tmp_path):
    from fractions import Fraction

    from codeclab.formats.video_container import FrameRecord, VideoHeader, pack_video

    video = tmp_path / "v.clab"
    header = VideoHeader("stem", bytes(8), 64, 48, Fraction(25), "limited", "bt709", True, 12, 3,
                         (FrameRecord("I", (1, 2), 0), FrameRecord("P", (3,), 0)))
    video.write_bytes(pack_video(header, [[b"a", b"bc"], [b"def"]]))
    from codeclab.implicit.container import ImplicitHeader, pack_implicit

    implicit = tmp_path / "v.clnv"
    architecture = {"patch": 8, "group_size": 2, "channels": 4, "stages": 1, "hidden": 8, "frequencies": 0, "siren": 1}
    implicit.write_bytes(pack_implicit(ImplicitHeader(architecture, 64, 48, 3, Fraction(25), "limited", "bt601", False, ()),
                                       [[b"a", b"b", b"c"], [b"", b"d", b"e"]]))
    golden = ROOT / "tests" / "golden"
    files = [golden / "mbt2018-mean.clab", video, golden / "mbt2018-mean.safetensors", ROOT / "models/zoo/mbt2018_mean_vr.safetensors",
             implicit]
    script = f"""
import sys
from codeclab.cli import main
for path in {[str(f) for f in files]!r}:
    assert main(["info", path]) == 0, path
print(sorted({{m.split(".")[0] for m in sys.modules}} & {{"torch", "numpy"}}))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count('"codec": "mbt2018-mean"') == 3 and proc.stdout.count('"codec": "stem"') == 1
    assert proc.stdout.count('"format": "model"') == 2 and '"frame_count": 2' in proc.stdout
    assert '"codec": "nirvana"' in proc.stdout and '"frame_count": 3' in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]"


# Layers of the package, lowest first: a module may import only from its own layer or lower ones.
LAYERS = [
    {"errors", "registry", "measures", "files", "ffmpeg", "progress"},
    {"coding"},
    {"transforms", "channels"},
    {"entropy_models"},
    {"codecs", "jscc"},
    {"compat"},
    {"data"},
    {"formats", "postfilters", "implicit"},
    {"cli", "evaluation", "training"},
]


def _layer(module: str) -> int:
    top = module.split(".")[1] if module.count(".") else module
    return next(i for i, names in enumerate(LAYERS) if top in names)


def _imports(path: Path, module: str, top_level: bool = False):
    """``(module imported, names)`` of each import in ``path`` (relative ones resolved);
    ``top_level``: only those that run when the module is imported."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    for node in tree.body if top_level else ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            yield base, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


def test_dependencies_run_one_way_and_no_private_names_cross_modules():
    problems = []
    for path in sorted((ROOT / "codeclab").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        if module == "codeclab":
            continue
        for target, names in _imports(path, module):
            if not target.startswith("codeclab.") or target == "codeclab":
                continue
            if _layer(target) > _layer(module):
                problems.append(f"{module} imports {target} (a higher layer)")
            same_package = target.rsplit(".", 1)[0] == module.rsplit(".", 1)[0] or target == module.rsplit(".", 1)[0]
            private = [n for n in names if n.startswith("_") and not same_package]
            if private:
                problems.append(f"{module} imports private {private} from {target}")
    assert problems == []


def test_the_import_graph_has_no_cycle():
    """No module of the package imports, directly or through others, one that imports it back
    (imports inside functions included); a compiled extension (``coding._native``) is a leaf."""
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
               for p in (ROOT / "codeclab").rglob("*.py")}
    graph = {}
    for module, path in modules.items():
        targets = set()
        for target, names in _imports(path, module):
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            compiled = [n for n in names if list((ROOT / Path(*target.split("."))).glob(f"{n}.*.so"))]
            if submodules or compiled:
                targets.update(submodules)
            elif target in modules:
                targets.add(target)
        graph[module] = targets - {module}
    done, path = set(), []

    def visit(module):
        if module in path:
            raise AssertionError(f"import cycle: {' -> '.join(path[path.index(module):] + [module])}")
        if module not in done:
            path.append(module)
            for target in sorted(graph[module]):
                visit(target)
            path.pop()
            done.add(module)

    for module in sorted(graph):
        visit(module)


# What `codeclab info` imports: the standard library and one another only (no torch, no numpy),
# so that reading a header takes a fraction of a second.
HEADER_PATH = {
    "codeclab", "codeclab.cli", "codeclab.errors", "codeclab.files", "codeclab.measures", "codeclab.registry",
    "codeclab.coding", "codeclab.coding.coders",
    "codeclab.evaluation.bd_rate_cli",
    "codeclab.formats", "codeclab.formats.container", "codeclab.formats.video_container", "codeclab.formats.model_header",
}


def _source(module: str) -> Path | None:
    path = ROOT / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    return path if path.is_file() else None


def test_header_path_imports_only_the_standard_library():
    problems = []
    for module in sorted(HEADER_PATH):
        for target, names in _imports(_source(module), module, top_level=True):
            top = target.split(".")[0]
            if top != "codeclab" and top not in sys.stdlib_module_names:
                problems.append(f"{module} imports {top}")
            # `from . import container` imports a module too
            for imported in [target, *(f"{target}.{n}" for n in names if _source(f"{target}.{n}"))]:
                if imported.startswith("codeclab") and imported not in HEADER_PATH:
                    problems.append(f"{module} imports {imported}")
    assert problems == []
