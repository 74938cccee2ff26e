"""Mutation check of the paper-detail tests (issue 29): each mutation changes one detail of the
official code in a copy of the tree, runs the tests named for it there, and records whether a test
failed (killed) or none did (survived). The working tree is never modified.

    python tools/mutation_check.py                    # every mutation; a Markdown table on stdout
    python tools/mutation_check.py --only mcquic      # the mutations whose name contains 'mcquic'
    python tools/mutation_check.py --json out.json    # also the results as JSON

A mutation whose snippet is not found exactly once is reported as ``stale`` (the code moved: update
the snippet), never silently skipped. Runs with ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("codeclab", "tests", "configs", "tools", "benchmarks", "pyproject.toml", "train.py", "eval.py", "eval_jscc.py")
DETAILS = "tests/entropy_models/test_paper_details.py"
RECIPES = "tests/training/test_paper_recipes.py"
RBQE = "tests/postfilters/test_rbqe.py"
JSCC = "tests/jscc/test_swinjscc.py"
CHANNELS = "tests/channels/test_channels.py"
PC = "tests/lossless/test_hclt.py"
NIRVANA = "tests/implicit/test_nirvana.py"


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = [
    Mutation("MLIC++ local/intra concatenation swapped", "codeclab/entropy_models/mlicpp.py",
             "features = [local, intra, *contexts, hyper]", "features = [intra, local, *contexts, hyper]",
             (f"{DETAILS}::test_mlicpp_nonanchor_parameters_see_local_intra_inter_channel_hyper_in_that_order",)),
    Mutation("MLIC++ intra context from the first slice", "codeclab/entropy_models/mlicpp.py",
             "self.global_intra_context[i](y_hats[-1] if i else reference",
             "self.global_intra_context[i](y_hats[0] if i else reference",
             (f"{DETAILS}::test_mlicpp_intra_context_attends_the_previous_slice",)),
    Mutation("MLIC++ LRP 0.5 tanh -> 1.0 tanh", "codeclab/entropy_models/mlicpp.py",
             "return 0.5 * torch.tanh(self.lrp_transform(x))", "return 1.0 * torch.tanh(self.lrp_transform(x))",
             (f"{DETAILS}::test_mlicpp_lrp_is_half_tanh",)),
    Mutation("MLICv2 RoPE base 10000 -> 100 (entropy model)", "codeclab/entropy_models/mlicv2.py",
             "rope_base: float = 10000.0", "rope_base: float = 100.0",
             (f"{DETAILS}::test_mlicv2_rope_base_is_10000_by_default",)),
    Mutation("MLICv2 RoPE base 10000 -> 100 (codec builder)", "codeclab/codecs/zoo.py",
             "rope_base: float = 10000.0", "rope_base: float = 100.0",
             (f"{DETAILS}::test_mlicv2_rope_base_is_10000_by_default",)),
    Mutation("MLICv2 selection guide gain 4 -> 2", "codeclab/entropy_models/mlicv2.py",
             "guide_gain = 4.0", "guide_gain = 2.0",
             (f"{DETAILS}::test_mlicv2_selection_guide_is_four_log_scale_over_threshold",)),
    Mutation("MLICv2 entropy config selective on", "configs/codec/entropy/mlicv2.yaml",
             "selective: false", "selective: true",
             (f"{RECIPES}::test_mlicv2_selective_compression_is_off_in_both_configs",)),
    Mutation("McQuic dead-codeword cap K/2 -> K", "codeclab/entropy_models/mcquic.py",
             "cap = k // 2", "cap = k",
             (f"{DETAILS}::test_mcquic_reassigns_at_most_half_of_a_codebook",)),
    Mutation("McQuic Gumbel temperature 1 -> 0.5", "codeclab/entropy_models/mcquic.py",
             "GUMBEL_TEMPERATURE = 1.0", "GUMBEL_TEMPERATURE = 0.5",
             (f"{DETAILS}::test_mcquic_training_sample_is_a_hard_gumbel_softmax_at_temperature_one",)),
    Mutation("McQuic Gumbel temperature at the call site", "codeclab/entropy_models/mcquic.py",
             "gumbel_softmax_hard(logits, GUMBEL_TEMPERATURE)", "gumbel_softmax_hard(logits, 2.0)",
             (f"{DETAILS}::test_mcquic_training_sample_is_a_hard_gumbel_softmax_at_temperature_one",)),
    Mutation("McQuic codebook init std sqrt(2/5d) -> sqrt(1/5d)", "codeclab/entropy_models/mcquic.py",
             "math.sqrt(2 / (5 * self.d))", "math.sqrt(1 / (5 * self.d))",
             (f"{DETAILS}::test_mcquic_codebook_init_is_small_init",)),
    Mutation("McQuic EMA of raw counts instead of normalised", "codeclab/entropy_models/mcquic.py",
             "normalized = total / total.sum(-1, keepdim=True)", "normalized = total",
             (f"{DETAILS}::test_mcquic_frequency_ema_is_the_official_normalised_rule",)),
    Mutation("McQuic EMA starts at 1 instead of 1/K", "codeclab/entropy_models/mcquic.py",
             "level.freq_ema.fill_(1.0 / level.quantizer.k)", "level.freq_ema.fill_(1.0)",
             (f"{DETAILS}::test_mcquic_frequency_ema_is_the_official_normalised_rule",)),
    Mutation("McQuic release reassignment copies the most used in order", "codeclab/entropy_models/mcquic.py",
             "sources = pool[torch.randperm(pool.numel(), generator=generator)[: dead.numel()].to(pool.device)]",
             "sources = pool[: dead.numel()]",
             (f"{DETAILS}::test_mcquic_release_reassignment_draws_among_the_used_codewords",)),
    Mutation("McQuic FusedLAMB without bias correction", "codeclab/training/lamb.py",
             "bias_correction: bool = True", "bias_correction: bool = False",
             (f"{RECIPES}::test_fused_lamb_is_apex_fusedlamb_written_out",)),
    Mutation("McQuic FusedLAMB without gradient clipping", "codeclab/training/lamb.py",
             "max_grad_norm: float = 1.0", "max_grad_norm: float = 0.0",
             (f"{RECIPES}::test_fused_lamb_is_apex_fusedlamb_written_out",)),
    Mutation("McQuic trains with torch-optimizer's Lamb", "configs/module/mcquic.yaml",
             "_target_: codeclab.training.lamb.FusedLamb", "_target_: codeclab.training.lamb.Lamb",
             (f"{RECIPES}::test_mcquic_module_optimiser_is_fused_lamb",)),
    Mutation("STEM temporal features replaced by hyper features", "codeclab/entropy_models/spatiotemporal.py",
             "r_hat, y_likelihoods = self.code_residual(y - reference, self.h_s(z_hat), self.temporal_prior(reference), step)",
             "r_hat, y_likelihoods = self.code_residual(y - reference, self.h_s(z_hat), self.h_s(z_hat), step)",
             (f"{DETAILS}::test_stem_entropy_parameters_see_hyper_temporal_spatial",
              f"{DETAILS}::test_stem_temporal_prior_changes_the_parameters_through_the_reference_alone")),
    Mutation("STEM training context sees r + noise", "codeclab/entropy_models/spatiotemporal.py",
             'noisy = self.training and self.context_input == "noise"', "noisy = self.training",
             (f"{DETAILS}::test_stem_training_rate_and_context_see_the_rounded_residual",)),
    Mutation("STEM training rate of r + noise", "codeclab/entropy_models/spatiotemporal.py",
             'rounded = self.training and self.residual_rate == "rounded"', "rounded = False",
             (f"{DETAILS}::test_stem_training_rate_and_context_see_the_rounded_residual",)),
    Mutation("STEM P-frames rounded around the mean on the reference grid", "codeclab/entropy_models/spatiotemporal.py",
             "return self.step(y, scales, means + (torch.round(means) - means).detach(), mask)",
             "return self.step(y, scales, means, mask)",
             ("tests/entropy_models/test_spatiotemporal.py::test_p_frames_stay_on_the_reference_grid_and_the_mean_moves_only_the_rate",
              f"{DETAILS}::test_stem_training_rate_and_context_see_the_rounded_residual")),
    Mutation("STEM files before residual_grid decode on the reference grid", "codeclab/compat/model_files.py",
             '(8, "residual_grid", "mean")]', "]",
             (f"{RECIPES}::test_files_before_format_6_keep_their_training_details",)),
    Mutation("SGA Adam lr changed at the call site", "codeclab/codecs/refinement.py",
             "lr=LEARNING_RATE)", "lr=1e-3)",
             ("tests/codecs/test_refinement.py::test_refinement_optimiser_is_adam_at_the_reference_learning_rate",)),
    Mutation("QVRF means not multiplied by the gain", "codeclab/entropy_models/gain.py",
             "None if means is None else means * g", "means",
             (f"{DETAILS}::test_gain_step_scales_values_scales_and_means",)),
    Mutation("QVRF explicit ladder ignored (log-spaced instead)", "codeclab/entropy_models/gain.py",
             "        if lmbdas is not None:\n            lmbdas = torch.tensor(lmbdas, dtype=torch.float32)\n        else:\n",
             "        if True:\n",
             (f"{DETAILS}::test_qvrf_ladder_starts_every_gain_at_the_sqrt_rule_on_the_grid",)),
    Mutation("QVRF stage 1 at the smallest lambda", "codeclab/training/rate_distortion.py",
             "lmbda = self.codec.entropy_model.gain_bank.lmbdas[-1]", "lmbda = self.codec.entropy_model.gain_bank.lmbdas[0]",
             (f"{RECIPES}::test_qvrf_stage_one_trains_level_zero_at_the_largest_lambda",)),
    Mutation("cheng2020 leaky slope 0.2 -> 0.01", "codeclab/entropy_models/autoregressive.py",
             "negative_slope=self.leaky_slope)", "negative_slope=0.01)",
             (f"{DETAILS}::test_cheng2020_entropy_parameters_use_tensorflows_leaky_relu",)),
    Mutation("cheng2020 robust tails dropped", "codeclab/entropy_models/autoregressive.py",
             "self.mixture.edges = OFFICIAL_LATENT_RANGE", "self.mixture.edges = None",
             (f"{DETAILS}::test_cheng2020_robust_tails_at_the_clip_edges",)),
    Mutation("WaLLoC inverse-CDF clip 1e-4 -> 1e-3", "codeclab/entropy_models/bounded.py",
             "SCALE_DIVISOR, LIMIT_MARGIN, CLIP = 1.85, 1e-3, 1e-4", "SCALE_DIVISOR, LIMIT_MARGIN, CLIP = 1.85, 1e-3, 1e-3",
             (f"{DETAILS}::test_walloc_inverse_cdf_clip_is_1e4",)),
    Mutation("ACGC hyper features first", "codeclab/entropy_models/acgc.py",
             "features = torch.cat([*contexts, hyper], dim=1)", "features = torch.cat([hyper, *contexts], dim=1)",
             (f"{DETAILS}::test_acgc_parameters_see_channel_then_global_then_hyper",)),
    Mutation("ACGC channel and global contexts swapped", "codeclab/entropy_models/acgc.py",
             "contexts = [self.channel_wise_context[i](decoded), self.global_inter_context[i](decoded, decoded)]",
             "contexts = [self.global_inter_context[i](decoded, decoded), self.channel_wise_context[i](decoded)]",
             (f"{DETAILS}::test_acgc_parameters_see_channel_then_global_then_hyper",)),
    Mutation("MLIC++ paper recipe back to the cosine schedule", "configs/experiment/mlic_paper.yaml",
             "  - override /optim: mlic\n", "",
             (f"{RECIPES}::test_mlic_paper_uses_the_released_multistep_schedule",)),
    Mutation("MLIC++ MultiStepLR milestones [80, 100] -> [80, 120]", "configs/optim/mlic.yaml",
             "milestones: [80, 100]", "milestones: [80, 120]",
             (f"{RECIPES}::test_mlic_paper_uses_the_released_multistep_schedule",)),
    Mutation("Format 6 migration: STEM files before 6 lose their noisy training", "codeclab/compat/model_files.py",
             '"stem": [(5, "residual_rate", "noise"), (5, "context_input", "noise"), (8, "residual_grid", "mean")],',
             '"stem": [(8, "residual_grid", "mean")],',
             (f"{RECIPES}::test_files_before_format_6_keep_their_training_details",)),
    Mutation("Format 6 migration: cheng2020 files before 6 lose slope 0.01", "codeclab/compat/model_files.py",
             '"cheng2020-anchor": [(5, "leaky_slope", 0.01), (5, "robust_tails", False)],',
             '"cheng2020-anchor": [(5, "robust_tails", False)],',
             (f"{RECIPES}::test_files_before_format_6_keep_their_training_details",)),
    Mutation("RBQE ECA kernel 3 -> 5", "codeclab/postfilters/rbqe.py", "ECA_KERNEL = 3", "ECA_KERNEL = 5",
             (f"{RBQE}::test_network_size_and_width_are_the_official_ones",)),
    Mutation("RBQE last anti-diagonal lower input with ECA", "codeclab/postfilters/rbqe.py",
             "            if i + j < self.exits:\n                self.eca[f\"lower{i}{j}\"] = ECA()",
             "            self.eca[f\"lower{i}{j}\"] = ECA()",
             (f"{RBQE}::test_the_last_anti_diagonal_and_exit_5_have_no_eca",)),
    Mutation("RBQE up-sampled input before the skips", "codeclab/postfilters/rbqe.py",
             "torch.cat([*skips, F.relu(self.up(lower))], dim=1)", "torch.cat([F.relu(self.up(lower)), *skips], dim=1)",
             (f"{RBQE}::test_up_nodes_put_the_skips_first_and_the_upsampled_lower_node_last",)),
    Mutation("RBQE exit on a score above (not at least) the threshold", "codeclab/postfilters/rbqe.py",
             "if scores[-1] >= self.threshold:", "if scores[-1] > self.threshold:",
             (f"{RBQE}::test_early_exit_takes_the_first_exit_scoring_at_least_the_threshold",)),
    Mutation("RBQE JPEG threshold 0.79 -> 0.8", "codeclab/postfilters/rbqe.py",
             'PAPER_THRESHOLDS = {"jpeg": 0.79', 'PAPER_THRESHOLDS = {"jpeg": 0.8',
             (f"{RBQE}::test_the_iqam_constants_are_the_matlab_ones",)),
    Mutation("RBQE IQAM smooth threshold 0.004 -> 0.005", "codeclab/postfilters/iqam.py",
             "SMOOTH_THRESHOLD = 0.004", "SMOOTH_THRESHOLD = 0.005", (f"{RBQE}::test_the_iqam_constants_are_the_matlab_ones",)),
    Mutation("RBQE IQAM Tchebichef normalisation", "codeclab/postfilters/iqam.py",
             "rho *= n / (2 * np.arange(n) + 1)", "rho *= n / (2 * np.arange(n) + 2)",
             (f"{RBQE}::test_tchebichef_basis_is_orthonormal_and_matches_the_official_tables",)),
    Mutation("RBQE IQAM patches not offset by half a block", "codeclab/postfilters/iqam.py",
             "    start = n // 2\n", "    start = 0\n", (f"{RBQE}::test_patches_are_offset_by_half_a_block",)),
    Mutation("RBQE QF 10 exit weights", "codeclab/training/rbqe.py",
             "10: (0.5, 0.5, 1.0, 1.0, 2.0)", "10: (0.5, 0.5, 1.0, 2.0, 1.0)",
             (f"{RBQE}::test_training_loss_weights_exits_by_quality_as_powerqe",)),
    Mutation("SwinJSCC ModNet 7 -> 6 layers", "codeclab/jscc/swinjscc.py", "MODNET_LAYERS = 7", "MODNET_LAYERS = 6",
             (f"{JSCC}::test_modnet_structure_is_the_official_one", f"{JSCC}::test_the_released_configurations_have_their_sizes")),
    Mutation("SwinJSCC ModNet width 1.5 D -> 2 D", "codeclab/jscc/swinjscc.py", "MODNET_WIDTH_FACTOR = 1.5",
             "MODNET_WIDTH_FACTOR = 2.0", (f"{JSCC}::test_modnet_structure_is_the_official_one",)),
    Mutation("SwinJSCC ModNet on undetached features", "codeclab/jscc/swinjscc.py", "        t = x.detach()\n",
             "        t = x\n", (f"{JSCC}::test_modnet_structure_is_the_official_one",)),
    Mutation("SwinJSCC sends the channels with the smallest gates", "codeclab/jscc/swinjscc.py",
             "importance.argsort(dim=1, descending=True)", "importance.argsort(dim=1, descending=False)",
             (f"{JSCC}::test_rate_adaptation_sends_the_c_channels_with_the_largest_summed_gates",)),
    Mutation("SwinJSCC loss without the clamp", "codeclab/training/jscc.py", "F.mse_loss(output.clamp(0, 1) * 255, image * 255)",
             "F.mse_loss(output * 255, image * 255)",
             (f"{JSCC}::test_training_loss_is_the_mse_on_the_255_scale_of_the_clamped_output",)),
    Mutation("Channel noise variance 1/SNR per real part", "codeclab/channels/__init__.py",
             "return math.sqrt(1.0 / (2 * 10 ** (snr_db / 10)))", "return math.sqrt(1.0 / (10 ** (snr_db / 10)))",
             (f"{CHANNELS}::test_noise_has_the_variance_the_snr_asks_for",)),
    Mutation("Channel power per real value", "codeclab/channels/__init__.py",
             "power = 2 * (x**2).sum() / sent", "power = (x**2).sum() / sent",
             (f"{CHANNELS}::test_power_is_normalised_per_complex_symbol_over_what_is_sent",)),
    Mutation("Channel symbols from adjacent values", "codeclab/channels/__init__.py",
             "return torch.complex(flat[:half], flat[half:])", "return torch.complex(flat[0::2], flat[1::2])",
             (f"{CHANNELS}::test_symbols_pair_the_first_half_with_the_second",)),
    Mutation("Channel Rayleigh amplitude without 1/sqrt(2)", "codeclab/channels/__init__.py",
             "amplitude = torch.sqrt(a**2 + b**2) / math.sqrt(2)", "amplitude = torch.sqrt(a**2 + b**2)",
             (f"{CHANNELS}::test_rayleigh_fades_each_symbol_with_unit_mean_power",)),
    Mutation("PC pseudocount 0.1 -> 0.01", "codeclab/entropy_models/hclt.py", "PSEUDOCOUNT = 0.1", "PSEUDOCOUNT = 0.01",
             (f"{PC}::test_paper_constants",)),
    Mutation("PC init perturbation 0.4 -> 0.2", "codeclab/entropy_models/hclt.py", "INIT_PERTURBATION = 0.4",
             "INIT_PERTURBATION = 0.2", (f"{PC}::test_paper_constants",)),
    Mutation("PC structure on 8-bit values", "codeclab/entropy_models/hclt.py", "STRUCTURE_BITS = 4", "STRUCTURE_BITS = 8",
             (f"{PC}::test_paper_constants",)),
    Mutation("PC inertia schedule 0.2 -> 0.5", "codeclab/training/circuit_em.py", "INERTIA_SCHEDULE = ((0.2, 0.9), (0.9, 0.95))",
             "INERTIA_SCHEDULE = ((0.5, 0.9), (0.9, 0.95))", (f"{PC}::test_paper_constants",)),
    Mutation("PC pseudocount not shared among outcomes", "codeclab/entropy_models/hclt.py",
             "counts = flow + pseudocount / old.shape[-1]", "counts = flow + pseudocount",
             (f"{PC}::test_em_step_is_mini_batch_em_with_shared_pseudocounts",)),
    Mutation("PC inertia weighs the new estimate", "codeclab/entropy_models/hclt.py",
             "old.copy_((inertia * old.exp() + (1 - inertia) * counts", "old.copy_(((1 - inertia) * old.exp() + inertia * counts",
             (f"{PC}::test_em_step_is_mini_batch_em_with_shared_pseudocounts",)),
    Mutation("PC leaves get hidden variables", "codeclab/entropy_models/hclt.py", "        has_children[0] = True\n        return ~has_children",
             "        return torch.zeros_like(has_children)",
             (f"{PC}::test_log_likelihood_is_the_hidden_tree_model_summed_exhaustively",)),
    Mutation("PC transitions transposed", "codeclab/entropy_models/hclt.py", 'torch.einsum("blz,lpz->blp"', 'torch.einsum("blz,lzp->blp"',
             (f"{PC}::test_log_likelihood_is_the_hidden_tree_model_summed_exhaustively",)),
    Mutation("PC tree rooted at variable 0", "codeclab/entropy_models/hclt.py", "root = nx.center(graph)[0]", "root = 0",
             (f"{PC}::test_chow_liu_tree_links_dependent_variables_and_is_stored_in_pre_order",)),
    Mutation("PC coder's transitions transposed", "codeclab/entropy_models/hclt.py",
             "context = _renormalise(context @ transition[node])", "context = _renormalise(context @ transition[node].T)",
             (f"{PC}::test_the_exact_coders_conditionals_are_the_models",)),
    Mutation("NIRVANA proxy boundary 3 -> 2", "codeclab/implicit/nirvana.py", "BOUNDARY = 3.0", "BOUNDARY = 2.0",
             (f"{NIRVANA}::test_the_shipped_config_is_the_default_and_its_constants_are_pinned",
              f"{NIRVANA}::test_quantized_layers_start_as_lilnetx_does")),
    Mutation("NIRVANA SIREN omega 30 -> 10", "codeclab/implicit/nirvana.py", "SIREN_OMEGA = 30.0", "SIREN_OMEGA = 10.0",
             (f"{NIRVANA}::test_siren_layers_are_sitzmanns",)),
    Mutation("NIRVANA SIREN first layer at PyTorch's start", "codeclab/implicit/nirvana.py",
             "QuantizedLinear(inputs, hidden, 1 / inputs)", "QuantizedLinear(inputs, hidden)",
             (f"{NIRVANA}::test_siren_layers_are_sitzmanns",)),
    Mutation("NIRVANA conv decoder per weight, not per kernel", "codeclab/implicit/nirvana.py",
             "return (integers.flatten(0, 1).flatten(1) @ self.decoder).reshape(integers.shape)",
             "return integers * torch.diagonal(self.decoder).reshape(1, 1, 3, 3)",
             (f"{NIRVANA}::test_quantized_layers_start_as_lilnetx_does",)),
    Mutation("NIRVANA no straight-through rounding", "codeclab/implicit/nirvana.py",
             "return F.linear(x, self.weight(_RoundStraightThrough.apply(self.proxy)), self.bias)",
             "return F.linear(x, self.weight(self.proxy), self.bias)",
             (f"{NIRVANA}::test_the_forward_pass_uses_rounded_proxies_and_passes_gradients_straight_through",)),
    Mutation("NIRVANA density without its final sigmoid layer", "codeclab/implicit/nirvana.py",
             "_Bitparm(channels), _Bitparm(channels, final=True))", "_Bitparm(channels), _Bitparm(channels))",
             (f"{NIRVANA}::test_bit_estimator_is_lilnetx_density",)),
    Mutation("NIRVANA groups coded whole, not as changes", "codeclab/implicit/video_file.py",
             "        previous, previous_floats = integers, floats\n    bar.close()",
             "        previous, previous_floats = None, floats\n    bar.close()",
             (f"{NIRVANA}::test_a_static_clip_costs_little_after_its_first_group",)),
    Mutation("NIRVANA later groups not started from the previous network", "codeclab/implicit/video_file.py",
             "        fit = fit_group(network, targets,",
             "        network = GroupNetwork(**arch)\n        fit = fit_group(network, targets,",
             (f"{NIRVANA}::test_a_static_clip_costs_little_after_its_first_group",)),
    Mutation("NIRVANA later groups at the first group's learning rate", "codeclab/implicit/nirvana.py",
             "factor = 1.0 if previous is None else config.group_lr_factor", "factor = 1.0",
             (f"{NIRVANA}::test_later_groups_learn_slower_by_the_group_factor",)),
]


def prepare(workdir: Path) -> None:
    """A copy of the code, tests and configs; everything else (models, data, reports) linked."""
    for entry in ROOT.iterdir():
        if entry.name in (".git", "logs", "outputs") or entry.name.startswith("."):
            continue
        target = workdir / entry.name
        if entry.name in COPIED:
            if entry.is_dir():
                shutil.copytree(entry, target, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
            else:
                shutil.copy2(entry, target)
        else:
            target.symlink_to(entry)


def run(mutation: Mutation, workdir: Path, timeout: int) -> tuple[str, str, float]:
    """``(result, detail, seconds)``: result ``killed``, ``survived``, ``stale`` or ``error``."""
    path = workdir / mutation.file
    original = path.read_text()
    if original.count(mutation.old) != 1:
        return "stale", f"snippet found {original.count(mutation.old)} times", 0.0
    path.write_text(original.replace(mutation.old, mutation.new))
    env = {**os.environ, "PYTHONPATH": str(workdir), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-rfE", "-p", "no:cacheprovider", *mutation.tests],
                              cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "error", "timeout", time.perf_counter() - start
    finally:
        path.write_text(original)  # the copy is restored for the next mutation
    seconds = time.perf_counter() - start
    lines = done.stdout.strip().splitlines()
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    tail = failed[0] if failed else (lines or [""])[-1]
    if done.returncode == 1:
        return "killed", tail, seconds
    if done.returncode == 0:
        return "survived", tail, seconds
    return "error", tail or done.stderr.strip().splitlines()[-1], seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run the mutations whose name contains this (case-insensitive)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per mutation")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if args.only.lower() in m.name.lower()]
    results = []
    with tempfile.TemporaryDirectory(prefix="codeclab-mutation-") as tmp:
        workdir = Path(tmp)
        prepare(workdir)
        # The unmutated copy must pass the named tests, or a "kill" means nothing.
        baseline_tests = sorted({t for m in chosen for t in m.tests})
        env = {**os.environ, "PYTHONPATH": str(workdir), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        baseline = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *baseline_tests],
                                  cwd=workdir, env=env, capture_output=True, text=True)
        if baseline.returncode != 0:
            print(baseline.stdout[-3000:], file=sys.stderr)
            print("mutation_check: the named tests fail without any mutation", file=sys.stderr)
            return 2
        for mutation in chosen:
            result, detail, seconds = run(mutation, workdir, args.timeout)
            results.append({"mutation": mutation.name, "file": mutation.file, "result": result,
                            "tests": list(mutation.tests), "detail": detail, "seconds": round(seconds, 1)})
            print(f"{result:9s} {seconds:6.1f}s  {mutation.name}", file=sys.stderr)
    print("| mutation | file | result | killed by |")
    print("| --- | --- | --- | --- |")
    for r in results:
        tests = "<br>".join(f"`{t.split('::')[-1]}`" for t in r["tests"])
        print(f"| {r['mutation']} | `{r['file']}` | {r['result']} | {tests} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0 if all(r["result"] == "killed" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
