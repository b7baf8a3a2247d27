"""Every way a user's image or .npy file can fail to read is one ValueError (runtime) or one `Error:` line (CLI).

The files are real: written byte by byte where a library would refuse to write them (a PNG with a broken chunk
after its first IDAT, a .npy header that promises terabytes), each reproducing one class of failure that
Pillow or numpy raises. The note beside each case says what reached the user before read_image_file turned it
into a message naming the file and what is accepted.
"""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from resnet_edge.cli import main
from resnet_edge.runtime import Predictor
from resnet_edge.runtime.images import read_image_file

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def written(path: Path, data: bytes) -> Path:
    """``path`` holding exactly ``data``: the file of a failure class."""
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def predictor(onnx_model):
    return Predictor(onnx_model)


def pixels(seed: int = 0, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk with a correct CRC (PNG spec 5.3)."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_ihdr(width: int = 32, height: int = 32) -> bytes:
    return png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))  # 8-bit RGB


def png_idat_stream(image: np.ndarray) -> bytes:
    """The zlib stream of an RGB image's scanlines, each with filter type 0."""
    return zlib.compress(b"".join(b"\x00" + row.tobytes() for row in image))


def encoded(image: np.ndarray | Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buffer, fmt, **options)
    return buffer.getvalue()


def npy_header(shape: tuple, descr: str = "<f8", version: tuple[int, int] = (1, 0)) -> bytes:
    """A .npy header (format spec in numpy.lib.format) written by hand, so it can lie about the data."""
    text = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    text += b" " * ((64 - (10 + len(text) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY" + bytes(version) + struct.pack("<H", len(text)) + text


# --- The failure classes: each builds a file in a folder and returns its path -------------------------------------

def bomb_over_twice_the_limit(folder: Path, monkeypatch) -> Path:
    # Before: PIL.Image.DecompressionBombError (not an OSError) from Image.open: a 30-line traceback.
    path = folder / "bomb.png"  # only the header: Pillow refuses it from the size alone, before any pixel
    path.write_bytes(PNG_SIGNATURE + png_ihdr(20_000, 10_000) + png_chunk(b"IEND", b""))
    return path


def bomb_between_once_and_twice_the_limit(folder: Path, monkeypatch) -> Path:
    # Before: a DecompressionBombWarning, then Pillow decoded it all (here a valid image, limit lowered).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 - 1)
    path = folder / "big.png"
    Image.fromarray(pixels(size=64)).save(path)
    return path


def bomb_warning_as_an_error(folder: Path, monkeypatch) -> Path:
    # Before: with Pillow's advice followed (the warning made an error), a DecompressionBombWarning traceback.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 - 1)
    warnings.simplefilter("error", Image.DecompressionBombWarning)  # undone by the test's catch_warnings
    path = folder / "big.png"
    Image.fromarray(pixels(size=64)).save(path)
    return path


def truncated_png(folder: Path, monkeypatch) -> Path:
    # OSError("image file is truncated") at load, after a lazy open succeeded.
    data = encoded(pixels(), "PNG")
    return written(folder / "half.png", data[: len(data) // 2])


def truncated_jpeg(folder: Path, monkeypatch) -> Path:
    # OSError("image file is truncated (N bytes not processed)") at load.
    data = encoded(pixels(), "JPEG")
    return written(folder / "half.jpg", data[: len(data) // 2])


def broken_chunk_after_first_idat(folder: Path, monkeypatch) -> Path:
    # Before: SyntaxError("broken PNG file (chunk ...)") from load(), which no `except OSError` catches.
    stream = png_idat_stream(pixels())
    half = len(stream) // 2
    second = struct.pack(">I", len(stream) - half) + b"ID\x00T" + stream[half:] + b"\0\0\0\0"  # bad chunk type
    path = folder / "broken-chunk.png"
    path.write_bytes(PNG_SIGNATURE + png_ihdr() + png_chunk(b"IDAT", stream[:half]) + second
                     + png_chunk(b"IEND", b""))
    return path


def bad_header_checksum(folder: Path, monkeypatch) -> Path:
    # SyntaxError("bad header checksum") inside Image.open, which turns it into UnidentifiedImageError.
    data = bytearray(encoded(pixels(), "PNG"))
    data[data.index(b"IHDR") + 17] ^= 0xFF  # the IHDR chunk's CRC
    return written(folder / "bad-crc.png", bytes(data))


def corrupt_image_data(folder: Path, monkeypatch) -> Path:
    # OSError("broken data stream when reading image file"): the zlib stream inside IDAT is not zlib.
    return written(folder / "corrupt-data.png", PNG_SIGNATURE + png_ihdr() + png_chunk(b"IDAT", b"not zlib" * 8) + png_chunk(b"IEND", b""))


def truncated_ihdr(folder: Path, monkeypatch) -> Path:
    # Before: ValueError("Truncated IHDR chunk") straight from Image.open: the Predictor's error named no file.
    path = folder / "short-ihdr.png"
    path.write_bytes(PNG_SIGNATURE + png_chunk(b"IHDR", struct.pack(">IIBBBB", 32, 32, 8, 2, 0, 0))
                     + png_chunk(b"IEND", b""))
    return path


def truncated_apng_control(folder: Path, monkeypatch) -> Path:
    # Before: ValueError("APNG contains truncated acTL chunk") from Image.open, naming no file.
    path = folder / "short-actl.png"
    path.write_bytes(PNG_SIGNATURE + png_ihdr() + png_chunk(b"acTL", b"\0\0\0\1")
                     + png_chunk(b"IDAT", png_idat_stream(pixels())) + png_chunk(b"IEND", b""))
    return path


def garbage_with_image_suffix(folder: Path, monkeypatch) -> Path:
    # UnidentifiedImageError, whose message repeated the path.
    return written(folder / "noise.jpg", np.random.default_rng(1).bytes(300))


def empty_image(folder: Path, monkeypatch) -> Path:
    # UnidentifiedImageError ("cannot identify image file"), not "empty".
    return written(folder / "empty.png", b"")


def folder_named_like_an_image(folder: Path, monkeypatch) -> Path:
    # Before: "no such file" from the runtime; a 4-line click usage error (exit 2) from the CLI.
    path = folder / "photos.png"
    path.mkdir()
    return path


def symlink_loop(folder: Path, monkeypatch) -> Path:
    # Before: "no such file" (Path.is_file() swallows ELOOP).
    path = folder / "loop.png"
    path.symlink_to(path)
    return path


def without_read_permission(folder: Path, monkeypatch) -> Path:
    # PermissionError from open(); as root permissions do not stop reads, so the case cannot be built.
    if os.geteuid() == 0:
        pytest.skip("root reads files without read permission; see read_error for an OS error root gets")
    path = folder / "private.png"
    Image.fromarray(pixels()).save(path)
    path.chmod(0)
    return path


def read_error(folder: Path, monkeypatch) -> Path:
    # An OS error even root gets: /proc/self/mem opens, and reading its (unmapped) offset 0 is EIO.
    if not Path("/proc/self/mem").exists():
        pytest.skip("needs Linux's /proc/self/mem for a file whose read fails")
    path = folder / "device.png"
    path.symlink_to("/proc/self/mem")
    return path


def float_image_outside_8_bits(folder: Path, monkeypatch) -> Path:
    # Before: accepted, and Pillow's convert("RGB") clipped values 0..1 to 0 or 1: a black image, silently.
    path = folder / "float.tif"
    Image.fromarray(np.random.default_rng(2).random((32, 32), dtype=np.float32)).save(path)
    return path


def pickled_npy(folder: Path, monkeypatch) -> Path:
    # ValueError("Object arrays cannot be loaded when allow_pickle=False").
    path = folder / "objects.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return path


def truncated_npy(folder: Path, monkeypatch) -> Path:
    # ValueError("Failed to read all data for array...").
    path = folder / "half.npy"
    np.save(path, pixels())
    path.write_bytes(path.read_bytes()[:200])
    return path


def npy_header_promising_terabytes(folder: Path, monkeypatch) -> Path:
    # Before: numpy's _ArrayMemoryError (a MemoryError): it allocates what the header says before reading.
    return written(folder / "huge.npy", npy_header((10**12,)) + b"\0" * 64)


def empty_npy(folder: Path, monkeypatch) -> Path:
    # Before: EOFError("No data left in file"), which click turns into "Aborted!".
    return written(folder / "empty.npy", b"")


def npz_under_npy_name(folder: Path, monkeypatch) -> Path:
    # Before: np.load returned an NpzFile (left open); the error said "got NpzFile" among the array forms.
    np.savez(folder / "batch.npz", images=pixels())
    path = folder / "batch.npy"
    (folder / "batch.npz").rename(path)
    return path


def damaged_zip_under_npy_name(folder: Path, monkeypatch) -> Path:
    # Before: zipfile.BadZipFile from np.load: a traceback.
    return written(folder / "damaged.npy", b"PK\x03\x04" + b"\0" * 40)


def malformed_npy_header(folder: Path, monkeypatch) -> Path:
    # ValueError from numpy's header parser (the header is not a dict literal).
    text = b"{'descr': garbage}".ljust(117) + b"\n"
    return written(folder / "bad-header.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text)


def oversized_npy_header(folder: Path, monkeypatch) -> Path:
    # Before: numpy's ValueError with a 3-line message: the CLI printed three lines.
    return written(folder / "long-header.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", 65_000) + b" " * 65_000)


def text_under_npy_name(folder: Path, monkeypatch) -> Path:
    # Before: "This file contains pickled (object) data" (np.load hands non-.npy bytes to pickle).
    path = folder / "notes.npy"
    path.write_text("not an array")
    return path


FAILURES = [
    (bomb_over_twice_the_limit, "too large to decode safely"),
    (bomb_between_once_and_twice_the_limit, "too large to decode safely (64x64 = 4,096 pixels)"),
    (bomb_warning_as_an_error, "too large to decode safely"),
    (truncated_png, "image file is truncated"),
    (truncated_jpeg, "image file is truncated"),
    (broken_chunk_after_first_idat, "broken PNG file"),
    (bad_header_checksum, "not a format Pillow recognizes"),
    (corrupt_image_data, "broken data stream"),
    (truncated_ihdr, "Truncated IHDR chunk"),
    (truncated_apng_control, "truncated acTL chunk"),
    (garbage_with_image_suffix, "not a format Pillow recognizes"),
    (empty_image, "the file is empty"),
    (folder_named_like_an_image, "is a folder"),
    (symlink_loop, "cannot be read (Too many levels of symbolic links)"),
    (without_read_permission, "cannot be read (Permission denied)"),
    (read_error, "cannot be read (Input/output error)"),
    (float_image_outside_8_bits, "a 32-bit float image (Pillow mode F) with values from 0"),
    (pickled_npy, "Object arrays cannot be loaded when allow_pickle=False"),
    (truncated_npy, "truncated or damaged"),
    (npy_header_promising_terabytes, "shape (1000000000000,) (8,000,000,000,000 bytes)"),
    (empty_npy, "the file is empty"),
    (npz_under_npy_name, "a zip archive (.npz, from numpy.savez), not a .npy array"),
    (damaged_zip_under_npy_name, "a zip archive"),
    (malformed_npy_header, "not a plain numeric .npy array"),
    (oversized_npy_header, "is large and may not be safe to load securely"),
    (text_under_npy_name, "not a .npy file"),
]
FAILURE_IDS = [build.__name__ for build, _ in FAILURES]


@pytest.fixture(params=FAILURES, ids=FAILURE_IDS)
def bad_file(request, tmp_path, monkeypatch):
    """(path, what the message must say) for one failure class, with any warning filter it sets undone after."""
    build, fragment = request.param
    with warnings.catch_warnings():
        yield build(tmp_path, monkeypatch), fragment


def assert_names_the_file(message: str, path: Path, fragment: str, prefix: str = "") -> None:
    assert "\n" not in message, message
    assert message.startswith(f"{prefix}{path}: "), message
    assert fragment in message, message
    assert "; expected " in message, message


def test_read_image_file_raises_one_line_value_error(bad_file):
    path, fragment = bad_file
    with pytest.raises(ValueError) as info:
        read_image_file(path)
    assert type(info.value) is ValueError  # not Pillow's or numpy's classes, which some subclass ValueError
    assert_names_the_file(str(info.value), path, fragment)


def test_predictor_raises_value_error_for_a_path_and_a_list(bad_file, predictor):
    path, fragment = bad_file
    with pytest.raises(ValueError) as info:
        predictor.predict(path)
    assert_names_the_file(str(info.value), path, fragment)
    with pytest.raises(ValueError) as info:
        predictor.predict([pixels(), path])
    assert_names_the_file(str(info.value), path, fragment, prefix="item 1 of the list: ")


def test_cli_prints_one_error_line_and_exits_1(bad_file, onnx_model):
    path, fragment = bad_file
    result = CliRunner().invoke(main, ["predict", str(onnx_model), str(path)])
    assert isinstance(result.exception, SystemExit), result.exception  # a traceback is any other exception
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {path}: "), result.output
    assert fragment in lines[0], lines[0]


def test_calibration_folder_names_the_file_that_fails(bad_file, tmp_path):
    from resnet_edge.calibration import CifarCalibrationReader

    path, fragment = bad_file
    if path.suffix == ".npy" or not path.is_file():
        pytest.skip("the folder reader takes image files only (by suffix)")
    Image.fromarray(pixels()).save(tmp_path / "0-good.png")  # read first, in name order
    with pytest.raises(ValueError) as info:
        CifarCalibrationReader.from_folder(tmp_path)
    assert_names_the_file(str(info.value), path, fragment)


def test_a_lazily_opened_pil_image_that_fails_to_decode(predictor, tmp_path):
    path = truncated_png(tmp_path, None)
    message = rf"^PIL image: cannot decode its pixels from {re.escape(str(path))} \(image file is truncated\); expected"
    # Image.open succeeds: Pillow reads only the header until the pixels are needed.
    with Image.open(path) as image, pytest.raises(ValueError, match=message):
        predictor.predict(image)


# --- Unusual modes that must work, against pixels computed here --------------------------------------------------

def gray16_png(folder: Path) -> tuple[Path, np.ndarray]:
    # Before: Pillow's convert("RGB") clipped every value over 255: the image came out white.
    values = np.random.default_rng(3).integers(0, 65536, (32, 32), dtype=np.uint16)
    values[0, :4] = [0, 128, 129, 65535]
    path = folder / "gray16.png"
    Image.fromarray(values).save(path)  # mode I;16, stored as a 16-bit grayscale PNG
    gray = np.round(values / 257).astype(np.uint8)  # 65535 / 255 = 257: the 16-bit range onto 8 bits
    return path, np.stack([gray] * 3, axis=2)


def palette_with_transparency(folder: Path) -> tuple[Path, np.ndarray]:
    # Before: right pixels, plus Pillow's UserWarning about byte transparency on every read.
    rng = np.random.default_rng(4)
    palette = rng.integers(0, 256, (8, 3), dtype=np.uint8)
    indices = rng.integers(0, 8, (32, 32), dtype=np.uint8)
    image = Image.frombytes("P", (32, 32), indices.tobytes())
    image.putpalette(palette.tobytes())
    path = folder / "palette.png"
    image.save(path, transparency=bytes([0, 64, 128, 255, 255, 255, 0, 32]))  # alpha per palette entry
    return path, palette[indices]  # alpha dropped, as for RGBA


def cmyk_jpeg(folder: Path) -> tuple[Path, np.ndarray]:
    image = pixels(5)
    path = folder / "cmyk.jpg"
    Image.fromarray(image).convert("CMYK").save(path, quality=95)  # C = 255 - R, ... K = 0
    return path, image


def one_bit_png(folder: Path) -> tuple[Path, np.ndarray]:
    bits = np.random.default_rng(6).random((32, 32)) > 0.5
    path = folder / "bits.png"
    Image.fromarray(bits).save(path)  # mode 1
    return path, np.stack([np.where(bits, 255, 0).astype(np.uint8)] * 3, axis=2)


def rgba_png(folder: Path) -> tuple[Path, np.ndarray]:
    rgba = np.concatenate([pixels(7), np.full((32, 32, 1), 10, np.uint8)], axis=2)
    path = folder / "rgba.png"
    Image.fromarray(rgba).save(path)  # 4 channels: RGBA
    return path, rgba[..., :3]


def whole_number_float_tiff(folder: Path) -> tuple[Path, np.ndarray]:
    gray = pixels(8)[..., 0]
    path = folder / "float.tif"
    Image.fromarray(gray.astype(np.float32)).save(path)  # mode F holding 0..255: nothing to clip
    return path, np.stack([gray] * 3, axis=2)


@pytest.mark.parametrize("build", [gray16_png, palette_with_transparency, cmyk_jpeg, one_bit_png, rgba_png,
                                   whole_number_float_tiff], ids=lambda build: build.__name__)
def test_unusual_modes_are_read_as_rgb(build, predictor, tmp_path):
    path, expected = build(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reading a valid file warns about nothing
        got = read_image_file(path)
    assert got.dtype == np.uint8 and got.shape == (32, 32, 3)
    if path.suffix == ".jpg":  # lossy: CMYK JPEGs are not chroma-subsampled, so the loss stays small
        difference = np.abs(got.astype(int) - expected)
        assert difference.mean() < 4 and difference.max() <= 16, (difference.mean(), difference.max())
    else:
        assert np.array_equal(got, expected)
    assert np.array_equal(predictor.predict(path).probabilities, predictor.predict(got).probabilities)
    with Image.open(path) as image:  # a PIL image of the same file takes the same conversion
        assert np.array_equal(predictor.predict(image).probabilities, predictor.predict(got).probabilities)


def test_cli_prints_a_pillow_warning_as_one_line_naming_the_file(onnx_model, tmp_path):
    image = pixels(9)
    path = tmp_path / "odd.png"  # an acTL chunk announcing 0 frames: Pillow warns, then reads the still image
    path.write_bytes(PNG_SIGNATURE + png_ihdr() + png_chunk(b"acTL", b"\0" * 8)
                     + png_chunk(b"IDAT", png_idat_stream(image)) + png_chunk(b"IEND", b""))
    with pytest.warns(UserWarning, match="Invalid APNG"):  # the runtime leaves Pillow's warning to the caller
        assert np.array_equal(read_image_file(path), image)
    result = CliRunner().invoke(main, ["predict", str(onnx_model), str(path)])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [f"Warning: {path}: Invalid APNG, will use default PNG image if possible"]
    assert str(path) in result.stdout and "Traceback" not in result.output
