"""Hidden Chow-Liu Trees: the probabilistic circuit of Liu, Mandt & Van den Broeck, "Lossless
Compression with Probabilistic Circuits" (ICLR 2022; official code Tractables/PressedJuice.jl on
ProbabilisticCircuits.jl), as an exact entropy model for patches of pixels.

The model (ProbabilisticCircuits.jl's ``hclt``)::

    Chow-Liu tree over the observed variables X_1..X_n (pairwise mutual information, maximum
    spanning tree, rooted at the graph centre), then one hidden variable Z_i with K states per
    tree node that has children:

        Z_root ~ Cat(root)                       X_i | Z_i ~ Cat(emission_i)       (inner i)
        Z_c | Z_parent(c) ~ Cat(transition_c)    X_c | Z_parent(c) ~ Cat(emission_c) (leaf c)

    (a leaf of the tree gets no hidden variable of its own: its input distributions hang off its
    parent's). Compiled to a circuit this is smooth, decomposable and structured, so every
    marginal p(x_1..x_k) is one bottom-up pass: the conditionals of an autoregressive coder
    come out of a tractable model.

Training (:meth:`HCLT.em_step`) is ProbabilisticCircuits.jl's mini-batch EM: the flows (expected
counts) of a batch are the gradients of its log-likelihood with respect to the log-parameters;
each sum node gets ``pseudocount / children`` and each categorical input ``pseudocount / C`` on
top, and ``new = inertia * old + (1 - inertia) * flow / total``.

Coding order and exactness. Variables are coded in the tree's pre-order (the tree's nodes are
stored in that order: a parent before its children, a subtree contiguous). The conditional of
node k given every earlier node then needs one message per tree edge::

        down_k(z)   = sum_zp ctx_p(zp) * transition_k(zp, z)           (p = parent of k)
        p(x_k = v | x_<k)  ~  sum_z down_k(z) * emission_k(z, v)         (leaf k: ctx_p instead of down_k)
        in_k(z)     = emission_k(z, x_k) * prod_{children c done} up_c(z)
        up_c(zp)    = sum_z transition_c(zp, z) * in_c(z)                (leaf c: emission_c(zp, x_c))
        ctx_p(zp)   = down_p(zp) * in_p(zp)

The official coder evaluates these marginals in float32 on a GPU and relies on the encoder and
decoder machines agreeing. Here they are computed on integers, so a file decodes on any machine:
the parameters are stored as integers in [1, 2^16] (:data:`PARAMETER_BITS`), every message is
cut back to at most 16 bits by a right shift (and raised to at least 1) after each product, and
the sums run in float64, where every partial sum of products of 16-bit integers over K <= 1024
terms is below 2^53 and therefore exact in any order (BLAS, threads, CPU or GPU). The coder
normalises each row of frequencies with integer arithmetic too. What is approximate: the integer
parameters round the trained float ones, and the shifts drop low bits of small messages; both
only cost rate (measured against the float model's log-likelihood in reports/lossless).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .base import ENTROPY_MODELS, LatentEntropyModel
from .tables import TableEntropyModel

# Integer parameters and messages have at most this many bits (a probability of 1 is 2^16).
PARAMETER_BITS = 16
# The coder's categorical rows are int32: frequencies are shifted below 2^30.
FREQUENCY_BITS = 30
# Largest K for which K products of two (PARAMETER_BITS + 1)-bit integers sum exactly in float64.
MAX_HIDDEN = 1024
# ProbabilisticCircuits.jl's defaults for HCLTs of categorical data.
PSEUDOCOUNT = 0.1
INIT_PERTURBATION = 0.4
PIXEL_VALUES = 256
STRUCTURE_BITS = 4  # the structure is learned on pixels truncated to their top 4 bits


def chow_liu_tree(samples: np.ndarray, num_cats: int, bits: int = STRUCTURE_BITS,
                  pseudocount: float = PSEUDOCOUNT) -> tuple[np.ndarray, np.ndarray]:
    """The HCLT structure of ``samples`` (``[N, n]`` integers in ``[0, num_cats)``): the maximum
    spanning tree of the pairwise mutual information of the values truncated to their top
    ``bits`` bits, rooted at its graph centre (ties: the lowest variable) and visited breadth
    first, as ProbabilisticCircuits.jl's ``hclt`` does (its examples learn the tree on truncated
    pixels). Returns ``(parents, variables)`` in pre-order: node ``i`` codes variable
    ``variables[i]``, ``parents[0] == -1`` and ``parents[i] < i``."""
    import networkx as nx  # structure learning only: the coding path never imports these
    from scipy.sparse.csgraph import minimum_spanning_tree

    samples = np.asarray(samples)
    levels = 1 << bits
    truncated = (samples.astype(np.int64) * levels) // num_cats
    count, n = truncated.shape
    one_hot = np.zeros((count, n * levels), dtype=np.float32)
    one_hot[np.arange(count)[:, None], np.arange(n) * levels + truncated] = 1
    joint = (one_hot.T @ one_hot).reshape(n, levels, n, levels).transpose(0, 2, 1, 3).astype(np.float64)
    joint = (joint + pseudocount / levels**2) / (count + pseudocount)
    marginal = (one_hot.sum(0).reshape(n, levels) + pseudocount / levels) / (count + pseudocount)
    outer = marginal[:, None, :, None] * marginal[None, :, None, :]
    information = (joint * np.log(joint / outer)).sum((2, 3))
    # scipy finds minimum spanning trees and ignores zero weights: maximise information through
    # positive weights that order the same way.
    weights = np.triu(information.max() + 1.0 - information, 1)
    tree = minimum_spanning_tree(weights).tocoo()
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(zip(tree.row.tolist(), tree.col.tolist()))
    root = nx.center(graph)[0]
    children = {v: sorted(c) for v, c in nx.bfs_successors(graph, root, sort_neighbors=sorted)}
    variables, parents, stack = [], [], [(root, -1)]
    while stack:  # pre-order: a parent, then each child's whole subtree
        variable, parent = stack.pop()
        parents.append(parent)
        variables.append(variable)
        node = len(variables) - 1
        stack.extend((child, node) for child in reversed(children.get(variable, [])))
    return np.asarray(parents, dtype=np.int64), np.asarray(variables, dtype=np.int64)


def check_structure(parents: np.ndarray, variables: np.ndarray) -> None:
    """``ValueError`` (one line) unless ``parents`` is a tree stored in pre-order (each parent is
    an ancestor still open when its child comes) and ``variables`` a permutation."""
    n = len(parents)
    if len(variables) != n or sorted(variables.tolist()) != list(range(n)):
        raise ValueError("the circuit's variable order is not a permutation")
    if n == 0 or parents[0] != -1:
        raise ValueError("the circuit's first node must be the root (parent -1)")
    path = [0]
    for node in range(1, n):
        while path and path[-1] != parents[node]:
            path.pop()
        if not path:
            raise ValueError(f"the circuit's node {node} does not come inside its parent's subtree (not a pre-order tree)")
        path.append(node)


@dataclass(frozen=True)
class CircuitTables:
    """The integer parameters and structure the coder uses (what a model file stores)."""

    root: np.ndarray  # [K]
    transition: np.ndarray  # [n * K, K]: row n_i * K + zp
    emission: np.ndarray  # [n * K, C]
    parents: np.ndarray  # [n]
    variables: np.ndarray  # [n]

    def check(self) -> None:
        n, k = len(self.parents), len(self.root)
        if not 1 <= k <= MAX_HIDDEN:
            raise ValueError(f"the circuit has {k} hidden states, outside [1, {MAX_HIDDEN}]")
        if self.transition.shape != (n * k, k) or self.emission.ndim != 2 or self.emission.shape[0] != n * k:
            raise ValueError("the circuit's integer parameters do not match its structure")
        for name in ("root", "transition", "emission"):
            table = getattr(self, name)
            if table.size and (table.min() < 1 or table.max() > 1 << PARAMETER_BITS):
                raise ValueError(f"the circuit's integer {name} parameters leave [1, 2^{PARAMETER_BITS}]")
        check_structure(self.parents, self.variables)


class HCLT(TableEntropyModel):
    """A Hidden Chow-Liu Tree over ``num_vars`` categorical variables with ``num_cats`` values and
    ``hidden`` states per hidden variable (the module docstring has the model and the coder).

    Float parameters (trained by EM, log-probabilities): ``log_root`` ``[K]``,
    ``log_transition`` ``[n, K, K]`` (row: the parent's state) and ``log_emission`` ``[n, K, C]``
    (row: the state of the node's own hidden variable, or its parent's for a leaf), indexed by
    tree node. The structure (``parents``, ``variables``) is learned from data
    (:func:`chow_liu_tree`); until then it is a chain. The integer tables are built from the float
    parameters by :meth:`update_tables` and stored in model files."""

    TABLE_BUFFERS = ("_int_root", "_int_transition", "_int_emission")

    def __init__(self, num_vars: int, num_cats: int = 256, hidden: int = 32, seed: int = 0):
        super().__init__()
        if not 1 <= hidden <= MAX_HIDDEN or num_vars < 1 or not 2 <= num_cats <= 1 << 16:
            raise ValueError(f"an HCLT needs 1 <= hidden <= {MAX_HIDDEN}, num_vars >= 1 and 2 <= num_cats <= 65536")
        self.num_vars, self.num_cats, self.hidden = int(num_vars), int(num_cats), int(hidden)
        self.register_buffer("parents", torch.arange(-1, num_vars - 1))
        self.register_buffer("variables", torch.arange(num_vars))
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("log_root", self._initial((hidden,), generator))
        self.register_buffer("log_transition", self._initial((num_vars, hidden, hidden), generator))
        self.register_buffer("log_emission", self._initial((num_vars, hidden, num_cats), generator))
        for name in self.TABLE_BUFFERS:
            self.register_buffer(name, torch.zeros(0, dtype=torch.int32))

    @staticmethod
    def _initial(shape, generator) -> Tensor:
        """ProbabilisticCircuits.jl's ``init_parameters(perturbation = 0.4)``: each distribution
        proportional to ``1 - p + 2 p U(0, 1)``."""
        if getattr(torch.get_default_device(), "type", "cpu") == "meta":
            return torch.empty(shape)
        weights = 1 - INIT_PERTURBATION + 2 * INIT_PERTURBATION * torch.rand(shape, generator=generator)
        return (weights / weights.sum(-1, keepdim=True)).log()

    # Structure ------------------------------------------------------------------------------

    def set_structure(self, parents: np.ndarray, variables: np.ndarray) -> None:
        check_structure(np.asarray(parents), np.asarray(variables))
        self.parents.copy_(torch.as_tensor(parents))
        self.variables.copy_(torch.as_tensor(variables))

    def _is_leaf(self) -> Tensor:
        """Nodes without a hidden variable of their own: the tree's leaves (the root always has one)."""
        has_children = torch.zeros(self.num_vars, dtype=torch.bool, device=self.parents.device)
        has_children[self.parents[1:]] = True
        has_children[0] = True
        return ~has_children

    def _levels(self) -> list[tuple[Tensor, Tensor]]:
        """Per depth, root first: the tree nodes at that depth and each one's parent's position
        among the nodes one level up (the root's: 0)."""
        parents = self.parents.tolist()
        depth, levels = [0] * self.num_vars, [[0]]
        for node in range(1, self.num_vars):
            depth[node] = depth[parents[node]] + 1
            if depth[node] == len(levels):
                levels.append([])
            levels[depth[node]].append(node)
        slot = {node: i for level in levels for i, node in enumerate(level)}
        device = self.parents.device
        return [(torch.tensor(level, device=device), torch.tensor([slot[parents[n]] if n else 0 for n in level], device=device))
                for level in levels]

    # Float model: training and rate estimates -------------------------------------------------

    def log_likelihood(self, x: Tensor, log_root: Tensor | None = None, log_transition: Tensor | None = None,
                       log_emission: Tensor | None = None) -> Tensor:
        """``[B]`` natural-log likelihood of ``x`` (``[B, n]`` integers, variables in patch order),
        one bottom-up pass over the tree's levels; the parameters default to the model's own
        (:meth:`em_step` passes copies that record gradients)."""
        log_root = self.log_root if log_root is None else log_root
        log_transition = self.log_transition if log_transition is None else log_transition
        log_emission = self.log_emission if log_emission is None else log_emission
        levels = self._levels()
        # Parameters and values reordered level by level once, then split into views: indexing
        # the full tensors per level would cost a full-size gradient buffer per level.
        order = torch.cat([level for level, _ in levels])
        sizes = [len(level) for level, _ in levels]
        emissions = log_emission[order].split(sizes)
        transitions = log_transition[order].exp().split(sizes)
        values = x[:, self.variables[order]].long().split(sizes, dim=1)
        is_leaf = self._is_leaf()[order].split(sizes)
        incoming = None  # [B, nodes of this level, K]: the summed log messages of their children
        for depth in range(len(levels) - 1, -1, -1):
            # [B, L, K]: log emission_i(z, x_i); a leaf's is already its message (over its parent's states)
            evidence = emissions[depth].transpose(1, 2)[torch.arange(sizes[depth], device=x.device), values[depth]]
            if incoming is not None:
                evidence = evidence + incoming
            if depth == 0:
                return torch.logsumexp(log_root + evidence[:, 0], -1)
            top = evidence.amax(-1, keepdim=True)
            # log sum_z transition(zp, z) exp(evidence(z)), stably; leaves keep their emissions
            summed = torch.einsum("blz,lpz->blp", (evidence - top).exp(), transitions[depth]).log() + top
            messages = torch.where(is_leaf[depth][None, :, None], evidence, summed)
            incoming = messages.new_zeros(messages.shape[0], sizes[depth - 1], self.hidden)
            incoming = incoming.index_add(1, levels[depth][1], messages)
        raise AssertionError("the tree has no root")

    @torch.no_grad()
    def em_step(self, x: Tensor, inertia: float, pseudocount: float = PSEUDOCOUNT) -> Tensor:
        """One mini-batch EM update on ``x`` (``[B, n]``); returns the batch's mean log-likelihood
        (nats per sample) before the update."""
        params = [p.detach().clone().requires_grad_() for p in (self.log_root, self.log_transition, self.log_emission)]
        with torch.enable_grad():
            log_likelihood = self.log_likelihood(x, *params)
            flows = torch.autograd.grad(log_likelihood.sum(), params, allow_unused=True, materialize_grads=True)
        for old, flow in zip((self.log_root, self.log_transition, self.log_emission), flows):
            counts = flow + pseudocount / old.shape[-1]  # a distribution's pseudocount, shared by its outcomes
            old.copy_((inertia * old.exp() + (1 - inertia) * counts / counts.sum(-1, keepdim=True)).log())
        return log_likelihood.mean()

    # Integer tables and exact coding ---------------------------------------------------------

    @staticmethod
    def _integer(log_probabilities: Tensor) -> Tensor:
        return (log_probabilities.double().exp() * (1 << PARAMETER_BITS)).round().clamp(1, 1 << PARAMETER_BITS).to(torch.int32)

    def update_tables(self) -> None:
        self._int_root = self._integer(self.log_root)
        self._int_transition = self._integer(self.log_transition).reshape(-1, self.hidden)
        self._int_emission = self._integer(self.log_emission).reshape(-1, self.num_cats)

    def tables_built(self) -> bool:
        return self._int_root.numel() > 0

    def fingerprint_sources(self) -> list[Tensor]:
        return [self.log_root, self.log_transition, self.log_emission, self.parents.float(), self.variables.float()]

    def tables(self) -> CircuitTables:
        def array(t):
            return t.cpu().numpy()

        return CircuitTables(array(self._int_root), array(self._int_transition), array(self._int_emission),
                             array(self.parents), array(self.variables))

    def code(self, values: Tensor | None, count: int, step) -> Tensor:
        """Run the exact coder over ``count`` patches, node by node in pre-order.

        ``values``: ``[count, n]`` integers in patch order (encoding) or None (decoding).
        ``step(frequencies, symbols)`` codes one node's ``count`` values with the int32
        ``[count, C]`` frequency rows: it encodes ``symbols`` (``[count]`` numpy int32) or, given
        None, decodes them; either way it returns them. Returns ``[count, n]`` in patch order."""
        k, c, n = self.hidden, self.num_cats, self.num_vars
        root = self._int_root.double()
        transition = self._int_transition.double().reshape(n, k, k)
        emission = self._int_emission.double().reshape(n, k, c)
        parents = self.parents.tolist()
        leaf = self._is_leaf().tolist()
        ordered = None if values is None else values[:, self.variables].long()
        coded: list[Tensor] = []
        # Open inner nodes (their subtree not yet complete): the message from above, and the
        # evidence from below (their own value and each completed child's message).
        down: dict[int, Tensor] = {}
        evidence: dict[int, Tensor] = {}
        path: list[int] = []

        def close(node: int) -> None:  # node's subtree is complete: send its message to its parent
            if leaf[node]:
                message = emission[node][:, coded[node]].T
            else:
                message = _renormalise(evidence.pop(node) @ transition[node].T)
                down.pop(node)
            parent = parents[node]
            evidence[parent] = _renormalise(evidence[parent] * message)

        for node in range(n):
            while path and path[-1] != parents[node]:
                close(path.pop())
            if node == 0:
                context = root.expand(count, k)
            else:
                parent = parents[node]
                context = _renormalise(down[parent] * evidence[parent])
                if not leaf[node]:
                    context = _renormalise(context @ transition[node])
            frequencies = _to_int32_rows(context @ emission[node])
            given = None if ordered is None else ordered[:, node].to(torch.int32).numpy()
            symbols = torch.as_tensor(np.asarray(step(frequencies, given), dtype=np.int64))
            coded.append(symbols)
            if not leaf[node]:
                down[node] = context
                evidence[node] = _renormalise(emission[node][:, symbols].T)
            path.append(node)
        stacked = torch.stack(coded, 1)
        result = torch.empty_like(stacked)
        result[:, self.variables] = stacked
        return result


def _power_of_two(exponent: Tensor) -> Tensor:
    """``2.0 ** exponent`` (float64) for integer exponents in [-1022, 1023], built from its bits:
    exact everywhere (``torch.ldexp`` is slow, ``exp2`` of a device library may round)."""
    return ((exponent.to(torch.int64) + 1023) << 52).view(torch.float64)


def _shift_rows(values: Tensor, bits: int) -> Tensor:
    """Integers (float64) shifted right, row by row, until each row's largest is below ``2^bits``,
    then raised to at least 1: the conditionals only depend on each row's ratios."""
    _, exponent = torch.frexp(values.amax(-1, keepdim=True))
    return torch.floor(values * _power_of_two(-(exponent - bits).clamp(min=0))).clamp_(min=1)


def _renormalise(values: Tensor) -> Tensor:
    """A message cut back to :data:`PARAMETER_BITS` bits."""
    return _shift_rows(values, PARAMETER_BITS)


def _to_int32_rows(values: Tensor) -> np.ndarray:
    """``[B, C]`` frequency rows below 2^FREQUENCY_BITS, each at least 1, as the coder's int32."""
    return _shift_rows(values, FREQUENCY_BITS).to(torch.int32).numpy()


def bits_per_dimension(log_likelihood: Tensor, dimensions: int) -> Tensor:
    """Mean negative log2-likelihood per variable of ``[B]`` natural-log likelihoods."""
    return -log_likelihood.mean() / (dimensions * math.log(2))


TRANSFORMS = ("none", "med")


def med_prediction(left: Tensor, above: Tensor, corner: Tensor) -> Tensor:
    """LOCO-I's median edge detector (JPEG-LS): min(a, b) above an edge, max(a, b) below one,
    else the plane through the three neighbours."""
    low, high = torch.minimum(left, above), torch.maximum(left, above)
    return torch.where(corner >= high, low, torch.where(corner <= low, high, left + above - corner))


def _block_prediction(blocks: Tensor, row: int, col: int) -> Tensor:
    """MED of position ``(row, col)`` of ``[N, C, p, p]`` blocks from their own pixels only: the
    first row predicts from the left, the first column from above, the first pixel from 0."""
    if row and col:
        return med_prediction(blocks[..., row, col - 1], blocks[..., row - 1, col], blocks[..., row - 1, col - 1])
    if col:
        return blocks[..., row, col - 1]
    if row:
        return blocks[..., row - 1, col]
    return torch.zeros_like(blocks[..., 0, 0])


@ENTROPY_MODELS.register("hclt")
class PatchCircuitEntropyModel(LatentEntropyModel):
    """Lossless coding of pixel values ``y`` (``[1, 3, H, W]`` integers in [0, 255], H and W
    multiples of ``patch``) with one :class:`HCLT` over each ``patch`` x ``patch`` block.

    ``channels = 3``: one circuit over the block's three colour planes together (``3 patch^2``
    variables, channel-major); ``channels = 1``: one grayscale circuit over each plane's block
    (``patch^2`` variables), the planes coded one after another. Blocks are independent, coded
    row by row in one stream; ``forward`` reports each block's exact log-likelihood under the
    float model spread evenly over its values (``likelihoods``), so their log2 sum is the rate.

    ``transform``: what the circuit models. ``"none"``: the pixel values themselves (the paper's
    PCs on pixels). ``"med"``: an invertible integer map first, as the paper's natural-image
    system puts its PC under an integer flow (IDF): each pixel's residual modulo 256 from the
    JPEG-LS median predictor within the block, then (``channels = 3``) the red and blue
    residuals minus the green one, modulo 256. The decoder inverts it pixel by pixel."""

    def __init__(self, patch: int = 8, channels: int = 3, hidden: int = 32, transform: str = "none", seed: int = 0):
        super().__init__(quantizer="noise")
        if patch < 1 or channels not in (1, 3) or transform not in TRANSFORMS:
            raise ValueError(f"an HCLT patch model needs patch >= 1, channels 1 or 3 and a transform in {TRANSFORMS}, "
                             f"got {patch}, {channels}, {transform!r}")
        self.patch, self.channels, self.transform = int(patch), int(channels), transform
        self.downsampling = self.patch
        self.circuit = HCLT(self.channels * self.patch**2, PIXEL_VALUES, hidden, seed)

    def blocks(self, y: Tensor) -> Tensor:
        """``[B, 3, H, W]`` -> ``[B * H/p * W/p, 3, p, p]``: blocks row by row."""
        b, c, h, w = y.shape
        p = self.patch
        return y.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(-1, c, p, p)

    def patches(self, y: Tensor) -> Tensor:
        """The circuit's variables of ``y``: ``[blocks, variables]`` (the planes of all blocks one
        after another when ``channels = 1``), after the ``transform``."""
        blocks = self.blocks(y)
        if self.transform == "med":
            rows, cols = blocks.shape[-2:]
            prediction = torch.stack([torch.stack([_block_prediction(blocks, r, c) for c in range(cols)], -1)
                                      for r in range(rows)], -2)
            blocks = (blocks - prediction).remainder(PIXEL_VALUES)
            if self.channels == 3:
                green = blocks[:, 1:2]
                blocks = torch.cat((blocks[:, :1] - green, green, blocks[:, 2:] - green), 1).remainder(PIXEL_VALUES)
        if self.channels == 1:
            blocks = blocks.transpose(0, 1)
        return blocks.reshape(-1, self.circuit.num_vars)

    def image(self, patches: Tensor, shape: tuple[int, int]) -> Tensor:
        """Inverse of :meth:`patches` for one image of ``shape`` (``(H, W)``)."""
        p, (h, w) = self.patch, shape
        blocks = patches.reshape(3, -1, p, p).transpose(0, 1) if self.channels == 1 else patches.reshape(-1, 3, p, p)
        if self.transform == "med":
            if self.channels == 3:
                green = blocks[:, 1:2]
                blocks = torch.cat((blocks[:, :1] + green, green, blocks[:, 2:] + green), 1).remainder(PIXEL_VALUES)
            residuals, blocks = blocks, torch.empty_like(blocks)
            for r in range(p):  # raster order: each prediction reads pixels already rebuilt
                for c in range(p):
                    blocks[..., r, c] = (residuals[..., r, c] + _block_prediction(blocks, r, c)).remainder(PIXEL_VALUES)
        return blocks.reshape(1, h // p, w // p, 3, p, p).permute(0, 3, 1, 4, 2, 5).reshape(1, 3, h, w)

    def forward(self, y, level=None):
        self.check_level(level)
        y_hat = self.quantize(y)
        per_value = self.circuit.log_likelihood(self.patches(y_hat)) / self.circuit.num_vars
        return {"y_hat": y_hat, "likelihoods": {"y": per_value.exp()[:, None].expand(-1, self.circuit.num_vars)}}

    def quantize(self, y, level=None):
        return y.round().clamp(0, PIXEL_VALUES - 1)

    def compress(self, y, coder, level=None):
        self.check_level(level)
        y_hat = self.quantize(y)
        values = self.patches(y_hat)
        encoder = coder.encoder()

        def encode(frequencies, symbols):
            encoder.encode_categorical(symbols, frequencies)
            return symbols

        self.circuit.code(values, len(values), encode)
        return [encoder.finish()], y_hat

    def decompress(self, streams, shape, coder, level=None):
        self.check_level(level)
        decoder = coder.decoder(streams[0])
        count = 3 * shape[0] * shape[1] // self.patch**2 // self.channels
        values = self.circuit.code(None, count, lambda frequencies, _: decoder.decode_categorical(frequencies))
        return self.image(values, shape).to(self.circuit.log_root.dtype)
