"""Lossless coding with probabilistic circuits (pc-lossless): the HCLT model against brute force,
the structure learner, EM as ProbabilisticCircuits.jl does it, and exact, byte-identical coding."""

import itertools
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from codeclab.codecs import pc_lossless
from codeclab.coding import get_coder
from codeclab.entropy_models import hclt
from codeclab.entropy_models.hclt import HCLT, CircuitTables, check_structure, chow_liu_tree
from codeclab.errors import CodecLabError
from codeclab.formats.image_file import decode_image, encode_image
from codeclab.formats.model_file import export_model, load_model, weights_sha256
from codeclab.training import circuit_em
from tests.conftest import ROOT, rewrite_model_file


def smooth_image(height, width, seed=0):
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.integers(-4, 5, (height, width, 3)), axis=1) + np.cumsum(rng.integers(-2, 3, (height, 1, 3)), 0)
    return (walk + 128).clip(0, 255).astype(np.uint8)


def trained_codec(patch=2, hidden=4, steps=15, seed=0):
    """A small pc-lossless codec fitted by EM to blocks of a smooth image (structure learned)."""
    codec = pc_lossless(patch=patch, hidden=hidden)
    image = smooth_image(32, 32, seed)
    values = codec.entropy_model.patches(torch.from_numpy(image).permute(2, 0, 1)[None].double())
    circuit = codec.entropy_model.circuit
    circuit.set_structure(*chow_liu_tree(values.long().numpy(), 256))
    for _ in range(steps):
        circuit.em_step(values.float(), inertia=0.2)
    return codec.eval()


def brute_force_log_likelihood(circuit: HCLT, x: np.ndarray) -> float:
    """log p(x) by summing the joint over every assignment of the hidden variables."""
    parents = circuit.parents.tolist()
    leaf = [node != 0 and node not in parents[1:] for node in range(circuit.num_vars)]
    inner = [node for node in range(circuit.num_vars) if not leaf[node]]
    root, transition, emission = (t.double().exp() for t in (circuit.log_root, circuit.log_transition, circuit.log_emission))
    values = x[circuit.variables.numpy()]
    total = 0.0
    for states in itertools.product(range(circuit.hidden), repeat=len(inner)):
        z = dict(zip(inner, states))
        p = root[z[0]]
        for node in range(circuit.num_vars):
            own = z[parents[node]] if leaf[node] else z[node]
            p = p * emission[node, own, values[node]]
            if node and not leaf[node]:
                p = p * transition[node, z[parents[node]], z[node]]
        total += float(p)
    return math.log(total)


def test_log_likelihood_is_the_hidden_tree_model_summed_exhaustively():
    circuit = HCLT(num_vars=5, num_cats=3, hidden=2, seed=3)
    # 0 -> {1, 3}, 1 -> {2}, 3 -> {4}: nodes 0, 1 and 3 have hidden variables, leaves 2 and 4 hang off their parents'.
    circuit.set_structure(np.array([-1, 0, 1, 0, 3]), np.array([4, 2, 0, 1, 3]))
    x = torch.tensor([[0, 2, 1, 1, 0], [2, 2, 2, 0, 1]])
    got = circuit.log_likelihood(x).double()
    for row, value in zip(x.numpy(), got):
        assert value.item() == pytest.approx(brute_force_log_likelihood(circuit, row), abs=1e-5)
    # A distribution: the probabilities of all 3^5 patches sum to one.
    every = torch.tensor(list(itertools.product(range(3), repeat=5)))
    assert circuit.log_likelihood(every).double().exp().sum().item() == pytest.approx(1.0, abs=1e-5)


def test_the_exact_coders_conditionals_are_the_models():
    circuit = HCLT(num_vars=5, num_cats=3, hidden=2)
    circuit.set_structure(np.array([-1, 0, 1, 0, 3]), np.array([4, 2, 0, 1, 3]))
    torch.manual_seed(1)
    for table in (circuit.log_root, circuit.log_transition, circuit.log_emission):  # far from uniform
        table.copy_(torch.distributions.Dirichlet(torch.full(table.shape[-1:], 0.5)).sample(table.shape[:-1]).log())
    circuit.update_tables()
    every = list(itertools.product(range(3), repeat=5))
    joint = {a: math.exp(brute_force_log_likelihood(circuit, np.array(a))) for a in every}
    x = np.array([2, 0, 1, 1, 2])
    order = circuit.variables.tolist()  # coded in tree pre-order
    rows = []
    circuit.code(torch.from_numpy(x)[None], 1, lambda frequencies, symbols: rows.append(frequencies[0]) or symbols)
    for node, row in enumerate(rows):
        seen = order[:node]
        marginal = [sum(p for a, p in joint.items() if all(a[v] == x[v] for v in seen) and a[order[node]] == value)
                    for value in range(3)]
        assert row / row.sum() == pytest.approx(np.array(marginal) / sum(marginal), abs=2e-3)


def test_chow_liu_tree_links_dependent_variables_and_is_stored_in_pre_order():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, 4000), rng.integers(0, 256, 4000)
    noise = rng.integers(-8, 9, 4000)
    # variable 1 copies 0, variable 2 follows 1 closely, variable 3 copies b and 4 is b's noisy twin
    samples = np.stack([a, a, (a + noise).clip(0, 255), b, (b + noise).clip(0, 255)], 1)
    parents, variables = chow_liu_tree(samples, 256)
    check_structure(parents, variables)
    edges = {frozenset((int(variables[i]), int(variables[p]))) for i, p in enumerate(parents) if p >= 0}
    assert {frozenset((0, 1)), frozenset((3, 4))} <= edges
    # Rooted at the graph centre (ProbabilisticCircuits.jl's `center(MStree)[1]`): no node is more than 2 edges away.
    depth = [0] * 5
    for i in range(1, 5):
        depth[i] = depth[parents[i]] + 1
    assert max(depth) <= 2


def test_structure_check_refuses_what_is_not_a_pre_order_tree():
    check_structure(np.array([-1, 0, 1, 0]), np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="not a pre-order tree"):
        check_structure(np.array([-1, 0, 0, 1]), np.array([0, 1, 2, 3]))  # node 3's parent closed at node 2
    with pytest.raises(ValueError, match="permutation"):
        check_structure(np.array([-1, 0, 1, 2]), np.array([0, 1, 1, 3]))
    with pytest.raises(ValueError, match="root"):
        check_structure(np.array([0, -1, 1, 2]), np.array([0, 1, 2, 3]))


def test_paper_constants():
    assert hclt.PSEUDOCOUNT == 0.1 and hclt.INIT_PERTURBATION == 0.4 and hclt.STRUCTURE_BITS == 4
    assert circuit_em.INERTIA_SCHEDULE == ((0.2, 0.9), (0.9, 0.95)) and circuit_em.FIRST_PHASE == pytest.approx(1 / 3)
    # Every partial sum of K products of two parameter-sized integers is exact in float64.
    assert 2 * (hclt.PARAMETER_BITS + 1) + math.log2(hclt.MAX_HIDDEN) <= 53 and hclt.FREQUENCY_BITS <= 30
    circuit = HCLT(num_vars=3, num_cats=256, hidden=32)
    assert circuit.hidden == 32 and pc_lossless().config == {"patch": 8, "channels": 3, "hidden": 32, "transform": "none", "seed": 0}
    # init_parameters(perturbation = 0.4): each weight in [0.6, 1.4] before normalising, so ratios stay within 1.4 / 0.6.
    weights = circuit.log_emission.exp()
    ratio = weights.amax(-1) / weights.amin(-1)
    assert ratio.max() <= 1.4 / 0.6 + 1e-4 and ratio.min() > 1.5


def test_em_step_is_mini_batch_em_with_shared_pseudocounts():
    circuit = HCLT(num_vars=1, num_cats=4, hidden=1)  # one categorical: its flows are the counts
    x = torch.tensor([[0], [0], [0], [2]])
    old = circuit.log_emission.exp()[0, 0].clone()
    circuit.em_step(x, inertia=0.25, pseudocount=0.4)
    estimate = (torch.tensor([3.0, 0, 1, 0]) + 0.4 / 4) / (4 + 0.4)
    assert torch.allclose(circuit.log_emission.exp()[0, 0], 0.25 * old + 0.75 * estimate, atol=1e-6)


def test_em_raises_the_likelihood():
    codec = pc_lossless(patch=2, hidden=4)
    image = smooth_image(32, 32)
    values = codec.entropy_model.patches(torch.from_numpy(image).permute(2, 0, 1)[None].float())
    circuit = codec.entropy_model.circuit
    circuit.set_structure(*chow_liu_tree(values.long().numpy(), 256))
    lls = [circuit.em_step(values, inertia=0.2).item() for _ in range(6)]
    assert lls[-1] > lls[0] + 10 and all(b > a for a, b in zip(lls[2:], lls[3:]))


def test_latents_round_trip_exactly_and_real_bits_follow_the_model():
    codec = trained_codec()
    image = smooth_image(16, 24, seed=1)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    coder = get_coder()
    compressed = codec.compress(x, coder)
    y_hat = codec.decompress_y(compressed.strings, (16, 24), coder)
    assert torch.equal(y_hat, codec.g_a(x)) and torch.equal(compressed.y_hat, y_hat)
    model_bits = -codec.entropy_model.circuit.log_likelihood(codec.entropy_model.patches(codec.g_a(x))).sum().item() / math.log(2)
    real_bits = 8 * len(compressed.strings[0])
    with torch.no_grad():  # the training pass reports the same rate through its likelihoods
        assert -codec(x)["likelihoods"]["y"].log2().sum().item() == pytest.approx(model_bits, rel=1e-4)
    assert abs(real_bits - model_bits) < 0.03 * model_bits + 200  # integer parameters: a rounding away


@pytest.mark.parametrize("channels, transform", [(3, "none"), (1, "none"), (3, "med"), (1, "med")])
def test_files_decode_to_the_input_byte_for_byte_at_odd_sizes(channels, transform):
    codec = pc_lossless(patch=4, channels=channels, hidden=3, transform=transform)
    image = smooth_image(13, 21, seed=2)
    decoded = decode_image(encode_image(codec, image), codec)
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, image)


def test_med_residuals_are_the_jpeg_ls_predictor_modulo_256():
    model = pc_lossless(patch=2, channels=1, transform="med").entropy_model
    plane = torch.tensor([[10.0, 20.0], [30.0, 25.0]])
    y = torch.stack([plane, plane, plane])[None]
    # (0,0): 10 - 0; (0,1): 20 - 10; (1,0): 30 - 10; (1,1): corner 10 <= min(20, 30) -> predict max = 30: -5 mod 256
    assert model.patches(y)[0].tolist() == [10, 10, 20, 251]
    colour = pc_lossless(patch=2, transform="med").entropy_model
    y = torch.stack([plane + 5, plane, plane + 1])[None]
    red, green, blue = colour.patches(y)[0].reshape(3, 4).tolist()
    assert green == [10, 10, 20, 251] and red == [5, 0, 0, 0] and blue == [1, 0, 0, 0]
    assert torch.equal(colour.image(colour.patches(y), (2, 2)), y)


def test_integer_messages_stay_within_their_bits():
    codec = trained_codec(steps=3)
    circuit = codec.entropy_model.circuit
    circuit.update_tables()
    seen = []
    values = torch.randint(0, 256, (5, circuit.num_vars))

    def step(frequencies, symbols):
        seen.append(frequencies)
        return symbols

    assert torch.equal(circuit.code(values, 5, step), values)
    rows = np.concatenate(seen)
    assert rows.dtype == np.int32 and rows.min() >= 1 and rows.max() < 1 << hclt.FREQUENCY_BITS
    tables = circuit.tables()
    assert tables.transition.min() >= 1 and tables.emission.max() <= 1 << hclt.PARAMETER_BITS


def test_model_files_with_hostile_circuits_are_refused(tmp_path):
    codec = trained_codec(steps=2)
    path = tmp_path / "pc.safetensors"
    export_model(codec, path)
    assert np.array_equal(decode_image(encode_image(load_model(path), smooth_image(8, 8)), load_model(path)), smooth_image(8, 8))

    def zero_emission(tensors):
        tensors["entropy_model.circuit._int_emission"][0, 0] = 0

    def cyclic(tensors):
        tensors["entropy_model.circuit.parents"][2] = 5

    for mutate, message in ((zero_emission, "leave \\[1, 2\\^16\\]"), (cyclic, "fingerprint|pre-order|stale")):
        def rehash(meta, tensors):  # a consistent file: only its circuit is hostile
            meta["weights_sha256"] = weights_sha256(tensors)

        target = rewrite_model_file(path, mutate, rehash, tmp_path / f"{mutate.__name__}.safetensors")
        with pytest.raises(CodecLabError, match=message):
            load_model(target)


def test_circuit_tables_check_bounds_the_hidden_states():
    tables = CircuitTables(np.ones(2000, np.int32), np.ones((2000, 2000), np.int32), np.ones((2000, 2), np.int32),
                           np.array([-1]), np.array([0]))
    with pytest.raises(ValueError, match="hidden states"):
        tables.check()


def test_train_py_fits_the_circuit_and_its_file_codes_losslessly(tmp_path):
    cmd = [sys.executable, "train.py", "experiment=pc_lossless", "trainer.max_steps=2", "data=default", "data.patch_size=8",
           "data.batch_size=32", "data.samples_per_epoch=64", "data.val_patch_size=32", "data.val_max_images=1",
           "data.preload=false", "trainer.val_check_interval=null", "trainer.check_val_every_n_epoch=1",
           "trainer.enable_progress_bar=false", "module.structure_blocks=64", "codec.hidden=4", f"hydra.run.dir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "trained 2 steps" in proc.stdout
    codec = load_model(tmp_path / "model.safetensors")
    assert codec.codec_id == "pc-lossless" and len(set(codec.entropy_model.circuit.parents.tolist())) > 2  # a learned tree
    image = smooth_image(20, 12, seed=4)
    assert np.array_equal(decode_image(encode_image(codec, image), codec), image)
