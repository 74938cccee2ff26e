"""Codec speed benchmark: encode and decode seconds of whole codecs on one Kodak image.

Each CODEC is one of
  * a codec config name (``configs/codec/<name>.yaml``), built at random weights, optionally with
    extra Hydra overrides after commas: ``s2lic,codec/entropy=charm``;
  * ``compressai:<registry name>`` (``compressai:elic2022-official``, ``compressai:mbt2018-mean``):
    compressai's own model at random weights and with compressai's own rANS coder; zoo models
    take the N, M of ``--quality`` (default 8: N, M = 192, 320, the size of ELIC and S2LIC);
  * a CodecLab model file (``*.safetensors``): a trained model; ``MODEL.safetensors@LEVEL`` codes a
    variable-rate model at that rate level.

CodecLab codecs run with the transform settings of ``codeclab encode/decode``
(:func:`codeclab.codecs.base.coding_transforms`; ``CODECLAB_TRANSFORMS``/``CODECLAB_LAYOUT``
override). A ``compressai:<name>`` model listed after a CodecLab codec of the same name and size
takes that codec's weights, so both compute the same network.

What is timed: ``compress(x)`` and ``decompress(...)`` on the image, padded to the codec's
multiple, in eval mode without gradients, tables already built (one untimed warm-up call).
Reading the image and writing a container are not timed. Runs alternate between the codecs
(run 1 of every codec, then run 2, ...) so that all of them meet the same background load;
the median over ``--runs`` is reported, in seconds and in megapixels (of the original image) per
second.

``coding_share`` is the fraction of encode + decode wall time spent inside the entropy coder:
every call to the stream encoder/decoder of the codec's coder (CodecLab codecs), to the
lossless image coding of WaLLoC's bounded latents (PNG/WebP, which is its entropy coder), or to
compressai's ``encode_with_indexes``/``decode_with_indexes`` (compressai models). Building
table indexes from scales is counted as network time, not coding time.

Random weights give latents of arbitrary statistics, so the coding share (and bytes) of a
random model is indicative only; pass a model file for the numbers of a trained model.

Usage: python benchmarks/codec_speed.py [--json] [--json-file PATH] [--runs N] [--threads T] [--image PNG] [--smoke] CODEC...
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


class CodingClock:
    """Accumulates the wall time spent inside wrapped entropy-coder calls."""

    def __init__(self):
        self.seconds = 0.0

    def timed(self, function):
        """``function`` wrapped so that the time spent in it is added to this clock."""

        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return call

    def wrap(self, obj, method_names):
        """A proxy of ``obj`` whose listed methods are timed; other attributes pass through."""
        clock = self

        class Timed:
            def __getattr__(self, name):
                attr = getattr(obj, name)
                return clock.timed(attr) if name in method_names else attr

        return Timed()


class TimedCoder:
    """Stands in for a CodecLab :class:`~codeclab.coding.EntropyCoder`, timing its streams."""

    def __init__(self, coder, clock: CodingClock):
        self._coder, self._clock, self.name = coder, clock, coder.name

    def encoder(self):
        return self._clock.wrap(self._clock.timed(self._coder.encoder)(), {"encode", "encode_categorical", "finish"})

    def decoder(self, data):
        return self._clock.wrap(self._clock.timed(self._coder.decoder)(data), {"decode", "decode_categorical"})


class Subject:
    """One codec under test: ``encode()`` returns what ``decode(coded)`` takes."""

    def __init__(self, label: str, model: torch.nn.Module, multiple: int, clock: CodingClock, encode, decode):
        self.label, self.model, self.multiple, self.clock = label, model, multiple, clock
        self.encode, self.decode = encode, decode
        self.enc_s: list[float] = []
        self.dec_s: list[float] = []
        self.coding_s: list[float] = []

    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def codeclab_subject(label: str, codec, level: int | None = None) -> Subject:
    from codeclab.codecs.base import coding_transforms
    from codeclab.coding import get_coder

    clock = CodingClock()
    codec.eval()
    codec.configure_transforms(*coding_transforms(codec))  # what `codeclab encode/decode` run
    coder = TimedCoder(get_coder(), clock)
    if codec.entropy_model.registry_name == "bounded":
        from codeclab.entropy_models import bounded

        # Its bounded latents' coder is a pair of module functions (PNG/WebP packing).
        for name in ("pack_latent_image", "unpack_latent_image"):
            setattr(bounded, name, clock.timed(getattr(bounded, name)))
    return Subject(label, codec, codec.downsampling, clock, lambda x: codec.compress(x, coder, level),
                   lambda compressed: codec.decompress(compressed, coder))


def compressai_subject(label: str, registry_name: str, quality: int) -> Subject:
    from compressai.entropy_models.entropy_models import EntropyModel
    from compressai.registry import MODELS
    from compressai.zoo import image_models

    if registry_name in image_models:  # the zoo knows the published N, M of each quality
        model = image_models[registry_name](quality=quality, pretrained=False)
    elif registry_name in MODELS:
        model = MODELS[registry_name]()
    else:
        raise SystemExit(f"unknown compressai model {registry_name!r}; known: {', '.join(sorted(MODELS))}")
    model.eval()
    model.update(force=True)
    clock = CodingClock()
    for module in model.modules():
        if isinstance(module, EntropyModel):
            module.entropy_coder = clock.wrap(module.entropy_coder, {"encode_with_indexes", "decode_with_indexes"})

    def decode(coded):
        return model.decompress(coded["strings"], coded["shape"])

    return Subject(label, model, 64, clock, model.compress, decode)


def build_subject(spec: str, quality: int) -> Subject:
    if spec.startswith("compressai:"):
        return compressai_subject(spec, spec.split(":", 1)[1], quality)
    path, _, level = spec.rpartition("@") if "@" in spec else (spec, "", "")
    if path.endswith(".safetensors"):
        from codeclab.formats.model_file import load_model

        return codeclab_subject(spec, load_model(path), int(level) if level else None)
    return codeclab_subject(spec, _common.compose_codec(spec))


def share_weights(subjects: list[Subject]) -> None:
    """Give each compressai model the weights of a CodecLab codec of the same name and size listed
    before it, so that both compute the same network (compared side by side)."""
    from codeclab.codecs.compressai_interop import COMPRESSAI_KEYS, to_compressai

    for subject in subjects:
        if not subject.label.startswith("compressai:"):
            continue
        name = subject.label.split(":", 1)[1]
        for source in subjects:
            codec = source.model
            if getattr(codec, "codec_id", None) == name in COMPRESSAI_KEYS and source.params() == subject.params():
                codec.ensure_tables()
                subject.model.load_state_dict(to_compressai(codec), strict=False)
                subject.model.update(force=True)
                subject.label += f" (weights of {source.label})"
                break


def load_image(path: Path):
    """``uint8 [H, W, 3]`` of the image to code."""
    from codeclab.data.images import read_image

    if not path.is_file():
        raise SystemExit(f"image not found: {path} (pass --image or set CODECLAB_DATA)")
    return read_image(path, notice=None)


def timed_call(subject: Subject, fn, *args):
    subject.clock.seconds = 0.0
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start, subject.clock.seconds


@torch.no_grad()
def measure(subjects: list[Subject], image, runs: int) -> None:
    from codeclab.formats.file_coding import codec_input

    inputs = {s.label: codec_input(image, s.multiple) for s in subjects}
    for subject in subjects:  # warm-up: builds tables, first-call allocations
        subject.decode(subject.encode(inputs[subject.label]))
    for _ in range(runs):
        for subject in subjects:
            coded, enc_s, enc_coding = timed_call(subject, subject.encode, inputs[subject.label])
            _, dec_s, dec_coding = timed_call(subject, subject.decode, coded)
            subject.enc_s.append(enc_s)
            subject.dec_s.append(dec_s)
            subject.coding_s.append((enc_coding + dec_coding) / (enc_s + dec_s))


def summary(subjects: list[Subject], megapixels: float) -> dict:
    results = {}
    for s in subjects:
        enc_s, dec_s = statistics.median(s.enc_s), statistics.median(s.dec_s)
        results[s.label] = {
            "enc_s": round(enc_s, 4),
            "dec_s": round(dec_s, 4),
            "enc_mp_s": round(megapixels / enc_s, 4),
            "dec_mp_s": round(megapixels / dec_s, 4),
            "coding_share": round(statistics.median(s.coding_s), 4),
            "params": s.params(),
        }
    return results


def main(argv=None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("codecs", nargs="+", metavar="CODEC")
    parser.add_argument("--image", type=Path, default=_common.DATA / "kodak" / "kodim01.png", help="PNG to code (default: Kodak kodim01)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per codec (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--quality", type=int, default=8, help="quality of compressai zoo models (sets N, M)")
    args = _common.parse(parser, argv, codecs=["tiny"], runs=1, image=lambda: _common.smoke_data() / "kodak" / "kodim01.png")
    if args.threads:
        torch.set_num_threads(args.threads)
    image = load_image(args.image)
    subjects = [build_subject(spec, args.quality) for spec in args.codecs]
    share_weights(subjects)
    measure(subjects, image, args.runs)
    results = summary(subjects, image.shape[0] * image.shape[1] / 1e6)
    if args.json or args.json_file:
        _common.emit(args, results)
        return 0
    print(f"{args.image.name} {tuple(image.shape[:2])}, {torch.get_num_threads()} threads, median of {args.runs} runs")
    print(f"{'codec':40s} {'enc s':>8s} {'dec s':>8s} {'enc MP/s':>9s} {'dec MP/s':>9s} {'coding':>7s} {'params':>11s}")
    for label, r in results.items():
        print(f"{label:40s} {r['enc_s']:8.3f} {r['dec_s']:8.3f} {r['enc_mp_s']:9.3f} {r['dec_mp_s']:9.3f} "
              f"{100 * r['coding_share']:6.1f}% {r['params']:11,d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
