#!/usr/bin/env bash
# Builds the entropy coder extension with AddressSanitizer + UndefinedBehaviorSanitizer into a
# temporary copy of the package and runs the coder's tests against it. Any sanitizer report
# aborts the run (non-zero exit). Usage: tools/sanitize_coder.sh [extra pytest args]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r "$repo/codeclab" "$work/codeclab"
find "$work/codeclab" -name '_native*.so' -delete
suffix="$(python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
g++ -std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
    -shared -fPIC $(python -m pybind11 --includes) -I"$repo/codeclab/coding/csrc" \
    "$repo/codeclab/coding/csrc/module.cpp" -o "$work/codeclab/coding/_native$suffix"
export LD_PRELOAD="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libubsan.so)"
# CPython and torch keep memory alive at exit on purpose: leak reports would be noise.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# Run from the temporary copy so that `import codeclab` cannot pick up the repository's build.
cd "$work"
export PYTHONPATH="$work"
python -c 'import sys, codeclab.coding._native as m; assert m.__file__.startswith(sys.argv[1]), m.__file__' "$work"
python -m pytest -q -p no:cacheprovider -c "$repo/pyproject.toml" --rootdir "$repo" \
    "$repo"/tests/coding/test_entropy_coder*.py "$@"
echo "sanitized coder tests passed"
