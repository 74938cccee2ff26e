"""A NIRVANA network's architecture: the fields a file stores and the limits a decoder accepts.

Torch-free, so ``codeclab info`` describes an implicit video file without importing torch.
"""

from __future__ import annotations

from ..errors import CodecLabError

ARCHITECTURE_FIELDS = ("patch", "group_size", "channels", "stages", "hidden", "frequencies", "siren")
# What a file may ask of a decoder (each a header field; the product bounds the work).
LIMITS = {"patch": (2, 256), "group_size": (1, 64), "channels": (1, 256), "stages": (0, 6), "hidden": (1, 1024),
          "frequencies": (0, 16), "siren": (0, 1)}
MAX_NETWORK_WEIGHTS = 1 << 22


def check_architecture(arch: dict[str, int]) -> None:
    """Refuse an architecture out of :data:`LIMITS`, a patch that ``stages`` does not divide, or
    one whose network is over :data:`MAX_NETWORK_WEIGHTS` (a hostile file's huge allocation)."""
    for name, (low, high) in LIMITS.items():
        value = arch.get(name)
        if not isinstance(value, int) or not low <= value <= high:
            raise CodecLabError(f"nirvana: {name} must be an integer in [{low}, {high}], got {value!r}")
    if arch["patch"] % (1 << arch["stages"]):
        raise CodecLabError(f"nirvana: patch {arch['patch']} is not a multiple of 2**stages = {1 << arch['stages']}")
    if network_weight_count(arch) > MAX_NETWORK_WEIGHTS:
        raise CodecLabError(f"nirvana: the architecture asks for over {MAX_NETWORK_WEIGHTS} weights per group")


def network_weight_count(arch: dict[str, int]) -> int:
    base = arch["patch"] >> arch["stages"]
    c, h = arch["channels"], arch["hidden"]
    mlp = (2 + 4 * arch["frequencies"]) * h + h * c * base * base
    return mlp + arch["stages"] * 9 * c * 4 * c + arch["group_size"] * 9 * c * 3
