"""The second photo set's builder: selection, reduction, .deb reading and refusals (no apt-get)."""

import hashlib
import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from codeclab.data import debian_photos
from codeclab.errors import CodecLabError


def _ar(members: dict[str, bytes]) -> bytes:
    out = b"!<arch>\n"
    for name, body in members.items():
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode()
        out += header + body + (b"\n" if len(body) % 2 else b"")
    return out


def _deb(files: dict[str, bytes]) -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as archive:
        for name, body in files.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
    return _ar({"debian-binary": b"2.0\n", "control.tar.xz": b"", "data.tar.xz": data.getvalue()})


def _damaged(deb: bytes) -> bytes:
    """The package with bytes zeroed in the middle of its compressed data archive."""
    start = deb.index(b"\xfd7zXZ") + 40
    return deb[:start] + bytes(16) + deb[start + 16:]


def _jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_selection_is_22_photos_with_distinct_names_from_the_pinned_packages():
    assert len(debian_photos.PHOTOS) == 22
    assert len({photo.name for photo in debian_photos.PHOTOS}) == 22
    assert {photo.package for photo in debian_photos.PHOTOS} == set(debian_photos.PACKAGES)
    assert all(len(photo.sha256) == 64 for photo in debian_photos.PHOTOS)
    assert debian_photos.PHOTOS[12].name == "kleiber"
    assert debian_photos.PHOTOS[13].name == "bythewater"


@pytest.mark.parametrize(("size", "factor"), [((2560, 1600), 2), ((1280, 1024), 2), ((6028, 3391), 5), ((640, 480), 2)])
def test_reduction_reaches_about_a_megapixel_and_at_least_halves(size, factor):
    assert debian_photos.reduction_factor(*size) == factor


def test_reduce_is_a_box_mean_cropped_to_even_sides():
    pixels = np.zeros((6, 10, 3), dtype=np.uint8)
    pixels[0:2, 0:2] = [[[0, 0, 0], [100, 100, 100]], [[100, 100, 100], [200, 200, 200]]]
    small = np.asarray(debian_photos.reduce_photo(Image.fromarray(pixels)))
    assert small.shape == (2, 4, 3)  # 3 x 5 after the 2x reduction, then even sides
    assert small[0, 0].tolist() == [100, 100, 100]


def test_deb_members_reads_the_data_archive():
    deb = _deb({"usr/share/a.jpg": b"A", "usr/share/b.jpg": b"B"})
    assert debian_photos.deb_members(deb, {"usr/share/b.jpg"}) == {"usr/share/b.jpg": b"B"}


@pytest.mark.parametrize(("deb", "message"), [
    (b"PK\x03\x04", "not a Debian package"),
    (b"!<arch>\ndebian-binary   0           0     0     100644  xx        `\n", "bad ar member size"),
    (_ar({"debian-binary": b"2.0\n"}), "no data archive"),
    (_damaged(_deb({"usr/share/a.jpg": bytes(range(256)) * 8})), "corrupt Debian package \\(data.tar.xz"),
])
def test_deb_members_refuses_what_is_not_a_package(deb, message):
    with pytest.raises(CodecLabError, match=message):
        debian_photos.deb_members(deb, set())


def _fake_packages(tmp_path, monkeypatch, tamper: str | None = None):
    """Three .deb files holding two small photos, with the selection pointed at them."""
    photos, contents = [], {}
    for package in debian_photos.PACKAGES:
        member = f"usr/share/backgrounds/{package}.jpg"
        body = _jpeg(64, 48)
        photos.append(debian_photos.Photo(package, member, hashlib.sha256(body).hexdigest()))
        contents[package] = {member: b"tampered" if package == tamper else body}
    monkeypatch.setattr(debian_photos, "PHOTOS", tuple(photos))
    for package, version in debian_photos.PACKAGES.items():
        (tmp_path / f"{package}_{version.replace(':', '%3a')}_all.deb").write_bytes(_deb(contents[package]))


def test_build_writes_every_reduced_photo(tmp_path, monkeypatch):
    _fake_packages(tmp_path, monkeypatch)
    written = debian_photos.build(tmp_path / "out", tmp_path)
    assert [path.name for path in written] == sorted(f"{package}.png" for package in debian_photos.PACKAGES)
    assert Image.open(written[0]).size == (32, 24)


def test_a_photo_that_fails_its_hash_writes_nothing(tmp_path, monkeypatch, capsys):
    _fake_packages(tmp_path, monkeypatch, tamper="mate-backgrounds")
    with pytest.raises(SystemExit) as stop:
        debian_photos.main([str(tmp_path / "out"), "--debs", str(tmp_path)])
    assert stop.value.code == 1
    error = capsys.readouterr().err
    assert error.startswith("debian_photos: error: ") and "does not match its SHA-256" in error
    assert error.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_missing_package_and_non_empty_output_are_one_line_errors(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        debian_photos.main([str(tmp_path / "out"), "--debs", str(tmp_path)])
    assert "mate-backgrounds 1.26.0-1 not found in" in capsys.readouterr().err
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.png").write_bytes(b"mine")
    with pytest.raises(SystemExit):
        debian_photos.main([str(tmp_path / "out"), "--debs", str(tmp_path)])
    assert "exists and is not empty" in capsys.readouterr().err
    assert (tmp_path / "out" / "keep.png").read_bytes() == b"mine"
