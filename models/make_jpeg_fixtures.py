"""Write tests/golden/jpeg/: small JPEGs of each kind maskd meets (photos,
camera MJPEG frames), cut from the sample photos in tests/golden/images/, each
beside Pillow's decoding of it as a PNG: `Image.open(path).convert("RGB")`,
what the PyTorch reference feeds SamPredictor. maskd's JPEG decoder must give
these pixels exactly (src/picture/jpeg.rs).

Run with the export venv's Python (Pillow with its bundled libjpeg-turbo):
    $(models/export.sh --python) models/make_jpeg_fixtures.py
`models/export.sh --goldens` runs it too (make_goldens.py).
"""

import io
from pathlib import Path

from PIL import Image, features

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO / "tests/golden/images"
OUT = REPO / "tests/golden/jpeg"

# EXIF orientation 6: "rotate 90 degrees clockwise to display". Neither
# Pillow's Image.open nor maskd applies it: both return the stored pixels.
ORIENTATION_TAG = 0x0112
# Markers removed from the MJPEG-style frame, as many UVC cameras send it:
# no DHT (the decoder must use the standard tables of JPEG Annex K.3) and no
# JFIF APP0.
DHT, APP0 = 0xC4, 0xE0


def exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = value
    return exif.tobytes()


# name: (photo, crop (x, y, w, h), mode, Pillow save options). The crops have
# odd sizes, so that partial MCUs and the upsampler's edge rows and columns
# are decoded; each holds strong colour edges, where decoders differ most.
FIXTURES = {
    "chelsea_420": ("chelsea", (150, 90, 61, 43), "RGB", {"quality": 90, "subsampling": "4:2:0"}),
    "coffee_422": ("coffee", (200, 120, 59, 41), "RGB", {"quality": 85, "subsampling": "4:2:2"}),
    "astronaut_444": ("astronaut", (180, 80, 53, 37), "RGB", {"quality": 95, "subsampling": "4:4:4"}),
    "astronaut_rgb": ("astronaut", (300, 250, 45, 33), "RGB",
                      {"quality": 90, "subsampling": "4:4:4", "keep_rgb": True}),
    "rocket_gray": ("rocket", (290, 200, 57, 39), "L", {"quality": 85}),
    "coffee_cmyk_adobe": ("coffee", (120, 60, 47, 35), "CMYK", {"quality": 90}),
    "chelsea_progressive": ("chelsea", (230, 150, 63, 45), "RGB",
                            {"quality": 85, "subsampling": "4:2:0", "progressive": True}),
    "astronaut_exif_orientation": ("astronaut", (60, 380, 51, 29), "RGB",
                                   {"quality": 90, "exif": exif_orientation(6)}),
    "coffee_mjpeg_no_dht": ("coffee", (330, 250, 67, 47), "RGB",
                            {"quality": 80, "subsampling": "4:2:2", "restart_marker_rows": 1}),
}


def segments(data: bytes):
    """The (marker, start, end) of each segment before the first scan."""
    i = 2
    while data[i + 1] != 0xDA:
        length = int.from_bytes(data[i + 2:i + 4], "big")
        yield data[i + 1], i, i + 2 + length
        i += 2 + length


def without_markers(data: bytes, markers: set[int]) -> bytes:
    kept = bytearray(data[:2])
    end = 2
    for marker, start, end in segments(data):
        if marker not in markers:
            kept += data[start:end]
    return bytes(kept + data[end:])


def encode(name: str) -> bytes:
    photo, (x, y, w, h), mode, options = FIXTURES[name]
    crop = Image.open(PHOTOS / f"{photo}.png").convert("RGB").crop((x, y, x + w, y + h)).convert(mode)
    buffer = io.BytesIO()
    crop.save(buffer, "JPEG", **options)
    data = buffer.getvalue()
    if name == "coffee_mjpeg_no_dht":
        data = without_markers(data, {DHT, APP0})
    markers = {marker for marker, _, _ in segments(data)}
    # Each file must be what its name says.
    assert (DHT in markers) == (name != "coffee_mjpeg_no_dht"), name
    assert (b"Adobe" in data) == (name in ("coffee_cmyk_adobe", "astronaut_rgb")), name
    assert (b"Exif" in data) == (name == "astronaut_exif_orientation"), name
    return data


def write_fixtures() -> None:
    assert features.check_feature("libjpeg_turbo"), "Pillow without libjpeg-turbo"
    OUT.mkdir(parents=True, exist_ok=True)
    for name in FIXTURES:
        jpeg = OUT / f"{name}.jpg"
        jpeg.write_bytes(encode(name))
        with Image.open(jpeg) as opened:
            if name == "astronaut_exif_orientation":
                assert opened.getexif()[ORIENTATION_TAG] == 6
            decoded = opened.convert("RGB")
        decoded.save(OUT / f"{name}.png", optimize=True)
    total = sum(f.stat().st_size for f in OUT.glob("*.*g"))
    print(f"maskd: wrote {len(FIXTURES)} JPEG fixtures to {OUT} ({total / 1024:.0f} KB), "
          f"Pillow {Image.__version__}, libjpeg-turbo {features.version('libjpeg_turbo')}")


if __name__ == "__main__":
    write_fixtures()
