import pytest

from codeclab.errors import CodecLabError
from codeclab.formats import container

HEADER = container.Header("mbt2018-mean", bytes(range(8)), height=513, width=70000, stream_lengths=())
STREAMS = [b"\x01\x02\x03" * 50, b"z" * 300]


def packed():
    return container.pack(HEADER, STREAMS)


def test_roundtrip():
    header, streams = container.unpack(packed())
    assert streams == STREAMS
    assert (header.codec_id, header.model_hash, header.height, header.width) == ("mbt2018-mean", bytes(range(8)), 513, 70000)
    assert header.stream_lengths == (150, 300)
    assert len(packed()) - sum(map(len, STREAMS)) < 45  # header overhead


@pytest.mark.parametrize("cut", [0, 3, 10, 30, len(packed()) - 1])
def test_truncated(cut):
    with pytest.raises(CodecLabError, match="truncated|bad magic"):
        container.unpack(packed()[:cut])


def test_every_flipped_bit_is_caught():
    data = packed()
    for pos in range(len(data)):
        corrupt = bytearray(data)
        corrupt[pos] ^= 0x10
        with pytest.raises(CodecLabError):
            container.unpack(bytes(corrupt))


def test_unknown_version_and_magic():
    data = bytearray(packed())
    data[4] = 99
    with pytest.raises(CodecLabError, match="unsupported file format version 99"):
        container.unpack(bytes(data))
    with pytest.raises(CodecLabError, match="bad magic"):
        container.unpack(b"\x89PNG\r\n\x1a\n" + bytes(40))


def test_trailing_garbage_rejected():
    with pytest.raises(CodecLabError, match="corrupt file"):
        container.unpack(packed() + b"x")


def test_decoding_a_file_of_another_coder_leaves_the_codec_as_it_was():
    """The header's coder decodes the file; a codec holds no coder, so the next encode uses the default."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from codeclab.formats.image_file import decode_image, encode_image
    from codeclab.formats.model_file import load_model

    golden = Path(__file__).resolve().parents[1] / "golden"
    codec = load_model(golden / "mbt2018-mean.safetensors")
    decode_image((golden / "mbt2018-mean.compressai.clab").read_bytes(), codec)
    assert not hasattr(codec, "coder") and not hasattr(codec, "set_coder")
    image = np.asarray(Image.open(golden / "astronaut_97x131.png").convert("RGB"))
    assert container.unpack(encode_image(codec, image))[0].coder == "codeclab"
