"""A second natural-photo test set, built from photographs that Debian's wallpaper packages ship.

Kodak is the only photo test set in the shared data, and BSDS500 trains and validates. This set is
held apart from both: 22 photographs (flowers, leaves, water, a forest path, a nuthatch, boats at
dusk, coloured cups, ...) from three Debian 12 packages, fetched with ``apt-get download``, each
checked against its SHA-256 and reduced by an integer box filter to about 1 megapixel (at least
2x, so the wallpapers' own JPEG artefacts average out) and written as PNG::

    python -m codeclab.data.debian_photos ~/.cache/codeclab/debian_photos   # apt-get download + build
    python -m codeclab.data.debian_photos OUT --debs DIR                   # .deb files already here
    python eval.py data=debian_photos classic=kodak model=models/zoo/mbt2018_mean_vr.safetensors

The selection (the list below, chosen by eye once): the three packages' photographs less two
monochrome ones (ColdRipple, Grey); abstract and rendered wallpapers, and two that may be either
(Infinite-Sea, MilkyWay), are out. Source files are pinned by hash; the reduction (a box mean of
f x f blocks, then a crop to even sides) is Pillow's ``Image.reduce``.
"""

import argparse
import hashlib
import io
import lzma
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..errors import CodecLabError, one_line_errors
from ..files import check_new_folder, write_folder_atomically

TARGET_PIXELS = 1_000_000
MIN_REDUCTION = 2


@dataclass(frozen=True)
class Photo:
    package: str
    member: str  # path inside the package's data archive
    sha256: str

    @property
    def name(self) -> str:
        parts = Path(self.member).parts
        # KDE's wallpapers are folders (wallpapers/<Name>/contents/images/WxH.jpg).
        stem = parts[parts.index("wallpapers") + 1] if "wallpapers" in parts else Path(self.member).stem
        return stem.split("_by_")[0].lower()


PACKAGES = {
    "mate-backgrounds": "1.26.0-1",
    "plasma-workspace-wallpapers": "4:5.27.5-2",
    "lomiri-wallpapers-20.04": "20.04.0-2",
}

_MATE = "usr/share/backgrounds/mate/nature/"
_KDE = "usr/share/wallpapers/{}/contents/images/2560x1600.jpg"
PHOTOS = (
    Photo("mate-backgrounds", _MATE + "Aqua.jpg", "5c30118205982da441bf7e6a1ada636a8a0be879408140b3148280c665ed6bce"),
    Photo("mate-backgrounds", _MATE + "Blinds.jpg", "f7aac0dcc2e06d0491643e84df3da1d9db7c4610f58806a880d56e074799f600"),
    Photo("mate-backgrounds", _MATE + "Dune.jpg", "8a67c2cb0be8c46b70c237311a4fa4d2b4ac7d39568135384787801fa5cc9a91"),
    Photo("mate-backgrounds", _MATE + "FreshFlower.jpg", "972b0a0c4e5e3fa93f4f244fc84bc64b121a5eac3aaa5856f1308c1f38a02f8e"),
    Photo("mate-backgrounds", _MATE + "Garden.jpg", "d3095ee09d425ef23d27155412136cf14fc3c9af76ca58b452f55e23da324e78"),
    Photo("mate-backgrounds", _MATE + "GreenMeadow.jpg", "8fa0de0aa4089f7319c9fb7a6d006d4cab6023e8c8853731557cff53567b4832"),
    Photo("mate-backgrounds", _MATE + "LadyBird.jpg", "e35a9a4126ef969c90b29c038058c5a575a20eadd84106a37bf1fa9931e7b61d"),
    Photo("mate-backgrounds", _MATE + "RainDrops.jpg", "3e4ea9671c28c90a86cf67b3db9daf18c4741587c596333a7529ca589aaa0c16"),
    Photo("mate-backgrounds", _MATE + "Storm.jpg", "77ca53077831d3237f73393a91fc879158abc046d852941c26e90de336356957"),
    Photo("mate-backgrounds", _MATE + "TwoWings.jpg", "665e5abf8a5399070a91a9a8e455fe071e5b61697ff78fdeda4e9843ef545aeb"),
    Photo("mate-backgrounds", _MATE + "Wood.jpg", "19c78500ac00a622e19907ab9cc7d06d46fe08c4a6142759a84195696150ec07"),
    Photo("mate-backgrounds", _MATE + "YellowFlower.jpg", "254da96256acb7add685679775a04d1e4a5bc8cd13e5a5a3d61351ce198a5306"),
    Photo("lomiri-wallpapers-20.04", "usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg",
          "6572410c09f4492c74ccadde133565a14c0161617d5917d4c820c66d65a44ba7"),
    Photo("plasma-workspace-wallpapers", _KDE.format("BytheWater"), "c272434ef39f2abf1ed48a15a8910088020f3165329a5092f3940ec9464bc05f"),
    Photo("plasma-workspace-wallpapers", _KDE.format("ColorfulCups"), "6e0f3a72feb5a4a9fec191b77e34874c3c69e2d93040deb3f07773e73385023d"),
    Photo("plasma-workspace-wallpapers", _KDE.format("DarkestHour"), "8e3703fae3a3c217b1fc2b399b706cd3720584268d071ba153e4809daa55f1ce"),
    Photo("plasma-workspace-wallpapers", _KDE.format("EveningGlow"), "586682dcb362b9f620068f10138f87d0d3649939aef238adc5807cb951976a7a"),
    Photo("plasma-workspace-wallpapers", _KDE.format("FallenLeaf"), "95603a6560c7e8d50e0e03b3f4adbe39c5258c72528e74e4ecaea1daf4e499de"),
    Photo("plasma-workspace-wallpapers", _KDE.format("Kite"), "bdca288ce296a981e80659c021cf707caddc702c0c8d4247e60bd618476d47f8"),
    Photo("plasma-workspace-wallpapers", _KDE.format("OneStandsOut"), "cb507baf1dafdcae362264f3aba9483ed4be5f6c9fdd770f0ec0920c6d9e80fd"),
    Photo("plasma-workspace-wallpapers", _KDE.format("Path"), "7477457d7f17b736259f1b021864778ad4ba802cf3214e6728181ff29126bba8"),
    Photo("plasma-workspace-wallpapers", _KDE.format("summer_1am"), "c868b50789591dd42910153c768053f1ba0a98cb36bbfc2b7a96a1045d0477f8"),
)


def reduction_factor(width: int, height: int) -> int:
    """The integer factor that brings the photo nearest to TARGET_PIXELS, and at least 2."""
    return max(MIN_REDUCTION, round((width * height / TARGET_PIXELS) ** 0.5))


def reduce_photo(image: Image.Image) -> Image.Image:
    """Box-reduce by :func:`reduction_factor`, then crop to even sides (4:2:0 codecs need them)."""
    image = image.convert("RGB")
    small = image.reduce(reduction_factor(*image.size))
    return small.crop((0, 0, small.width - small.width % 2, small.height - small.height % 2))


def deb_members(deb: bytes, wanted: set[str]) -> dict[str, bytes]:
    """The wanted files of a .deb (an ar archive whose data.tar.* holds the files)."""
    if not deb.startswith(b"!<arch>\n"):
        raise CodecLabError("not a Debian package (no ar header)")
    offset = 8
    while offset + 60 <= len(deb):
        name = deb[offset:offset + 16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(deb[offset + 48:offset + 58].decode("ascii").strip())
        except ValueError as err:
            raise CodecLabError("corrupt Debian package (bad ar member size)") from err
        body = deb[offset + 60:offset + 60 + size]
        if name.startswith("data.tar"):
            found = {}
            try:
                with tarfile.open(fileobj=io.BytesIO(body)) as archive:
                    for info in archive:
                        member = info.name.removeprefix("./")
                        if member in wanted and info.isfile():
                            found[member] = archive.extractfile(info).read()
            except (tarfile.TarError, EOFError, OSError, lzma.LZMAError) as err:
                raise CodecLabError(f"corrupt Debian package ({name}: {err})") from err
            return found
        offset += 60 + size + size % 2
    raise CodecLabError("corrupt Debian package (no data archive)")


def download_packages(folder: Path) -> None:
    """``apt-get download`` the pinned versions into ``folder`` (Debian or a derivative)."""
    names = [f"{package}={version}" for package, version in PACKAGES.items()]
    try:
        result = subprocess.run(["apt-get", "download", *names], cwd=folder, capture_output=True, text=True)
    except FileNotFoundError as err:
        raise CodecLabError("apt-get not found: download the packages elsewhere and pass --debs DIR") from err
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise CodecLabError(f"apt-get download failed ({last}); run 'apt-get update' first, or pass --debs DIR")


def find_deb(folder: Path, package: str) -> Path:
    version = PACKAGES[package].split(":")[-1]
    debs = sorted(folder.glob(f"{package}_*{version}_all.deb"))
    if not debs:
        raise CodecLabError(f"{package} {PACKAGES[package]} not found in {folder} (expected {package}_..._all.deb)")
    return debs[0]


def build(output: Path, debs: Path) -> list[Path]:
    """Check every photo against its hash, reduce it and write OUTPUT/<name>.png (all or nothing)."""
    sources: dict[str, bytes] = {}
    for package in PACKAGES:
        wanted = {photo.member for photo in PHOTOS if photo.package == package}
        sources.update(deb_members(find_deb(debs, package).read_bytes(), wanted))
    for photo in PHOTOS:
        data = sources.get(photo.member)
        if data is None:
            raise CodecLabError(f"{photo.package} lacks {photo.member}")
        if hashlib.sha256(data).hexdigest() != photo.sha256:
            raise CodecLabError(f"{photo.member} in {photo.package} does not match its SHA-256 (another package version?)")

    def write(folder: Path) -> None:
        for photo in PHOTOS:
            reduce_photo(Image.open(io.BytesIO(sources[photo.member]))).save(folder / f"{photo.name}.png", optimize=False)

    write_folder_atomically(output, write)
    return sorted(output.glob("*.png"))


@one_line_errors("debian_photos")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codeclab.data.debian_photos", description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="a new (or empty) folder for the PNG files")
    parser.add_argument("--debs", type=Path, help="a folder that already holds the three .deb files (no apt-get)")
    args = parser.parse_args(argv)
    check_new_folder(args.output)  # before the download
    with tempfile.TemporaryDirectory() as scratch:
        debs = args.debs
        if debs is None:
            debs = Path(scratch)
            download_packages(debs)
        written = build(args.output, debs)
    print(f"{len(written)} photos in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
