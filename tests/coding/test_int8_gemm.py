"""CodecLab's int8 product (``codeclab/coding/csrc/int8_gemm.hpp``) against exact float64 sums and
``torch._int_mm``: the same integers for every shape edge (tile rows, strip columns, odd and
multi-block depths), thread count and code path."""

import numpy as np
import pytest
import torch

from codeclab.coding.native import Int8Matrix
from codeclab.entropy_models import integer

SHAPES = [
    (1, 1, 1),
    (5, 3, 7),  # fewer rows than a tile, odd depth, a partial strip
    (13, 34, 17),  # two full tiles and a partial one, a full and a partial strip
    (97, 1030, 48),  # more rows than a row block, depth over two pair blocks (512 pairs)
    (200, 75, 640),  # STEM's widest outputs
]


def _operands(m, k, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(-128, 128, (m, k), dtype=torch.int8, generator=g)
    b = torch.randint(-128, 128, (k, n), dtype=torch.int8, generator=g)
    return a, b


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("vectorise", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_products_are_exact_sums(shape, vectorise, threads):
    a, b = _operands(*shape)
    c = Int8Matrix(b.numpy()).multiply(a.numpy(), threads, vectorise)
    assert c.dtype == np.int32 and c.shape == (shape[0], shape[2])
    assert torch.equal(torch.from_numpy(c).double(), a.double() @ b.double())


def test_extreme_values_fill_the_int32_range_without_wrapping():
    k = 2**31 // (128 * 128) - 1  # 131,071 products of -128 * -128: the largest sum below 2^31
    a, b = torch.full((2, k), -128, dtype=torch.int8), torch.full((k, 16), -128, dtype=torch.int8)
    c = Int8Matrix(b.numpy()).multiply(a.numpy())
    assert (c == k * 128 * 128).all() and k * 128 * 128 < 2**31


def test_the_layer_kernels_agree_with_torch_int_mm():
    a, b = _operands(48, 72, 40, seed=1)
    native, reference = integer.Int8Product(b, "native"), integer.Int8Product(b, "torch")
    assert native.native is not None and reference.native is None
    assert torch.equal(native(a), reference(a)) and native(a).dtype == torch.int32
    with pytest.raises(ValueError, match="int8 kernel must be one of native, torch"):
        integer.Int8Product(b, "blas")


def test_the_cpu_picks_torch_only_with_avx512_vnni_and_onednn(monkeypatch):
    assert integer.int8_kernel() == ("torch" if Int8Matrix.vnni else "native")
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    assert integer.int8_kernel() == "native"


def test_wrong_operands_get_one_line_errors():
    matrix = Int8Matrix(np.ones((4, 3), dtype=np.int8))
    assert (matrix.rows, matrix.columns) == (4, 3)
    with pytest.raises(ValueError, match=r"the rows must be 2-D \[m, 4\] int8"):
        matrix.multiply(np.ones((2, 5), dtype=np.int8))
    with pytest.raises(ValueError, match="must be 2-D"):
        Int8Matrix(np.ones(4, dtype=np.int8))
    with pytest.raises(ValueError, match="must not be empty"):
        Int8Matrix(np.ones((0, 3), dtype=np.int8))
    with pytest.raises(TypeError, match="incompatible function arguments"):  # no silent wrap of wider values
        matrix.multiply(np.full((2, 4), 300, dtype=np.int32))
    transposed = np.arange(8, dtype=np.int8).reshape(4, 2).T  # not C-contiguous: read through a copy
    assert np.array_equal(matrix.multiply(transposed), transposed.astype(np.int32) @ np.ones((4, 3), dtype=np.int32))
