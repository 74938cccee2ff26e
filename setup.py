"""Builds CodecLab's C++ entropy coder; the package metadata lives in pyproject.toml."""

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

ext_modules = [
    Pybind11Extension(
        "codeclab.coding._native",
        sources=["codeclab/coding/csrc/module.cpp"],
        depends=["codeclab/coding/csrc/rans.hpp", "codeclab/coding/csrc/int8_gemm.hpp"],
        include_dirs=["codeclab/coding/csrc"],
        cxx_std=17,
        extra_compile_args=["-O3"],
    ),
]

setup(ext_modules=ext_modules, cmdclass={"build_ext": build_ext})
