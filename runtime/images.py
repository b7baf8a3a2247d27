"""Read images for prediction from files: ``.npy`` arrays, or PNG/JPEG (and any format Pillow reads).

Every way a user's file can fail to read (missing, unreadable, empty, truncated,
corrupt, an archive under a ``.npy`` name, a decompression bomb) is a
``ValueError`` that names the file and says what was expected, never Pillow's or
numpy's own exception. ``.npy`` files load with ``allow_pickle=False``, so a file
can never run code, and their header is checked against the file's size before
numpy allocates the array it describes. Images come back as 8-bit RGB: 16-bit
grayscale is scaled (not clipped) to 8 bits, alpha is dropped, and 32-bit
integer or float images whose values are not 0-255 are refused rather than
clipped. Pillow is optional (``pip install 'resnet-edge[images]'``).
"""

from __future__ import annotations

import io
import stat
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from resnet_edge.extras import require

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"  # an .npz archive (np.savez) is a zip file
_EXPECTED_NPY = "expected one array saved with numpy.save (numbers, no Python objects)"
_EXPECTED_IMAGE = "expected a PNG, JPEG or other image file Pillow reads, or a .npy array"
_EXPECTED_ANY = "expected a readable image file or .npy array"


def image_files(folder: str | Path) -> list[Path]:
    """The image files directly in ``folder`` (by suffix), in name order."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image_file(path: str | Path) -> np.ndarray:
    """The array in ``path``: uint8 ``(H, W, 3)`` for an image; whatever a ``.npy`` holds.

    Raises ``ValueError`` naming the file when it cannot be read as either.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except OSError as exc:  # a symlink loop, a name too long, a folder we may not enter
        raise ValueError(f"{path}: cannot be read ({_reason(exc)}); {_EXPECTED_ANY}") from None
    if stat.S_ISDIR(mode):
        raise ValueError(f"{path}: is a folder; {_EXPECTED_ANY}")
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path}: not a regular file (a device, pipe or socket); {_EXPECTED_ANY}")
    if path.suffix.lower() == ".npy":
        with _opened(path) as handle:
            return _read_npy(path, handle)
    image_module = require("PIL.Image", "images", f"Reading {path.suffix or 'image'} files")
    with _opened(path) as handle:
        return _read_image(path, handle, image_module)


def read_image_bytes(data: bytes, name: str) -> np.ndarray:
    """The array in an encoded file's bytes (an image, or a ``.npy``), checked as :func:`read_image_file` does.

    ``name`` (a path, an id) is what error messages call it. Raises ``ValueError``.
    """
    path, handle = Path(name), io.BytesIO(data)
    if data.startswith(_NPY_MAGIC):
        return _read_npy(path, handle)
    return _read_image(path, handle, require("PIL.Image", "images", "Reading encoded images"))


def pil_to_rgb(image: Any) -> np.ndarray:
    """A PIL image as uint8 ``(H, W, 3)``; ``ValueError`` for pixels that 8-bit RGB cannot hold.

    Pillow's ``convert("RGB")`` clips 16-bit gray to 255 (a 16-bit PNG turns white), so it is scaled here;
    a palette with per-entry transparency goes through RGBA, which gives the same pixels without Pillow's
    warning. Alpha is dropped, as ``convert("RGB")`` does.
    """
    if image.mode.startswith("I;16"):
        wide = np.asarray(image).astype(np.uint32)  # asarray honours the byte order of I;16B
        gray = ((wide * 255 + 32767) // 65535).astype(np.uint8)  # 0..65535 onto 0..255, rounded
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode in ("I", "F"):  # 32-bit pixels have no standard range: refuse what clipping would change
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > 255 or not np.array_equal(values, np.round(values))):
            kind = "float" if image.mode == "F" else "integer"
            raise ValueError(
                f"a 32-bit {kind} image (Pillow mode {image.mode}) with values from {values.min():g} to "
                f"{values.max():g}; expected 8-bit pixels (whole numbers 0-255) or a 16-bit image"
            )
    if image.mode == "P" and isinstance(image.info.get("transparency"), bytes):
        image = image.convert("RGBA")
    try:
        rgb = image.convert("RGB")
    except ValueError:  # modes Pillow has no RGB conversion for ("La")
        raise ValueError(
            f"a Pillow mode {image.mode} image, which Pillow cannot convert to RGB; expected an RGB, "
            "grayscale, palette or CMYK image"
        ) from None
    return np.asarray(rgb, dtype=np.uint8)


def pil_image_pixels(image: Any) -> np.ndarray:
    """A PIL image the caller opened, decoded now, as uint8 ``(H, W, 3)`` (see :func:`pil_to_rgb`).

    ``Image.open`` reads only the header, so a truncated or corrupt file fails here, at the first look at
    its pixels: ``ValueError`` with Pillow's reason, like a file given by path.
    """
    pil = require("PIL.Image", "images", "Reading PIL images")  # imported already: the image is one of its objects
    try:
        image.load()
    except (pil.DecompressionBombError, pil.DecompressionBombWarning, *_PILLOW_ERRORS) as exc:
        source = f" from {image.filename}" if getattr(image, "filename", "") else ""
        raise ValueError(f"cannot decode its pixels{source} ({_reason(exc)}); expected an image Pillow can "
                         "decode completely") from None
    return pil_to_rgb(image)


@contextmanager
def _opened(path: Path) -> Iterator[BinaryIO]:
    """The file opened for reading; the OS's reason it cannot be (permission, I/O error) as the ValueError."""
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({_reason(exc)}); {_EXPECTED_ANY}") from None
    with handle:
        yield handle


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message (numpy's span several), or its class when it has none."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__


def _start(path: Path, handle: BinaryIO, expected: str) -> bytes:
    """The first bytes of the file, refusing an empty one (read, not stat: /proc-like files report size 0)."""
    try:
        head = handle.read(16)
        handle.seek(0)
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({_reason(exc)}); {expected}") from None
    if not head:
        raise ValueError(f"{path}: the file is empty; {expected}")
    return head


def _read_npy(path: Path, handle: BinaryIO) -> np.ndarray:
    head = _start(path, handle, _EXPECTED_NPY)
    # np.load would open an archive as an NpzFile rather than an array, and hand anything without the .npy
    # header to pickle (refused with allow_pickle=False, as "pickled data"); name what the file is instead.
    if head.startswith(_ZIP_MAGIC):
        raise ValueError(f"{path}: a zip archive (.npz, from numpy.savez), not a .npy array; {_EXPECTED_NPY}")
    if not head.startswith(_NPY_MAGIC):
        raise ValueError(f"{path}: not a .npy file (it does not start with the .npy header); {_EXPECTED_NPY}")
    try:
        _check_npy_size(handle)
        handle.seek(0)
        array = np.load(handle, allow_pickle=False)
    except OSError as exc:  # the disk, not the format
        raise ValueError(f"{path}: cannot be read ({_reason(exc)}); {_EXPECTED_NPY}") from None
    except (ValueError, EOFError) as exc:  # numpy's errors for malformed, truncated or pickled files
        raise ValueError(f"{path}: not a plain numeric .npy array ({_reason(exc)}); {_EXPECTED_NPY}") from None
    if not isinstance(array, np.ndarray):  # np.load's other results (archives, pickles) are refused above
        raise ValueError(f"{path}: holds a {type(array).__name__}, not an array; {_EXPECTED_NPY}")
    return array


def _check_npy_size(handle: BinaryIO) -> None:
    """Refuse a header that promises more data than the file holds, before numpy allocates it.

    np.load allocates the whole array the header describes, then reads: a damaged header claiming
    terabytes would be a MemoryError rather than a message. numpy's header readers raise ValueError
    for a malformed header. Format 3.0 (utf-8 field names) has no public reader; np.load checks it.
    """
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    else:
        return
    if dtype.hasobject:  # pickled data: np.load refuses it with allow_pickle=False
        return
    needed = dtype.itemsize
    for dim in shape:
        needed *= dim  # Python ints: no overflow for absurd shapes
    here = handle.tell()
    available = handle.seek(0, 2) - here
    if needed > available:
        raise ValueError(
            f"truncated or damaged: the header describes a {dtype} array of shape {shape} ({needed:,} bytes), "
            f"the file holds {available:,} bytes of data"
        )


# What Pillow raises for a file it cannot decode, besides the decompression-bomb classes handled apart.
# Image.open documents UnidentifiedImageError (an OSError) and ValueError; load() documents OSError
# ("image file is truncated", "broken data stream"). Its plugins signal bad data with SyntaxError (Pillow
# issue #1643), which Image.open catches, with IndexError, TypeError and struct.error, as "this plugin
# cannot parse the file" - but the same parsers raise them unwrapped once open() has returned: a broken
# PNG chunk after the first IDAT is a SyntaxError from load(). EOFError ends frame reads. These are the
# classes Pillow itself treats as a bad file; anything else (MemoryError, a bug) is left to surface.
_PILLOW_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, struct.error)


def _read_image(path: Path, handle: BinaryIO, pil: Any) -> np.ndarray:
    _start(path, handle, _EXPECTED_IMAGE)
    image = _decoding(path, pil, lambda: pil.open(handle))
    try:
        _check_pixels(path, image, pil.MAX_IMAGE_PIXELS)
        _decoding(path, pil, image.load)  # open() only reads the header; the pixels' errors come here
        try:
            return pil_to_rgb(image)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    finally:
        image.close()


def _decoding(path: Path, pil: Any, step: Any) -> Any:
    """``step()``, with Pillow's errors as one ValueError naming the file."""
    bombs = (pil.DecompressionBombError, pil.DecompressionBombWarning)  # the warning: where warnings are errors
    try:
        return step()
    except bombs as exc:
        raise ValueError(f"{path}: too large to decode safely ({_reason(exc)}); expected an image of at most "
                         f"{pil.MAX_IMAGE_PIXELS:,} pixels (PIL.Image.MAX_IMAGE_PIXELS)") from None
    except pil.UnidentifiedImageError:  # its message repeats the path (or names our file handle)
        reason = "not a format Pillow recognizes"
    except OSError as exc:
        if exc.errno is not None:  # the OS failed (permission, I/O), not Pillow's decoder
            raise ValueError(f"{path}: cannot be read ({_reason(exc)}); {_EXPECTED_ANY}") from None
        reason = _reason(exc)
    except _PILLOW_ERRORS as exc:
        reason = _reason(exc)
    raise ValueError(f"{path}: neither a .npy array nor an image Pillow can read ({reason}); {_EXPECTED_IMAGE}")


def _check_pixels(path: Path, image: Any, limit: int | None) -> None:
    """Refuse what Pillow only warns about: more than MAX_IMAGE_PIXELS (below twice that, open() succeeds).

    Pillow's DecompressionBombWarning says the file "could be decompression bomb DOS attack", and decoding
    ~90 million pixels for a 32x32 model is never what the user meant. Setting PIL.Image.MAX_IMAGE_PIXELS
    (None: no limit) moves this limit with Pillow's.
    """
    if limit is None:
        return
    width, height = image.size
    if max(1, width) * max(1, height) > limit:
        raise ValueError(
            f"{path}: too large to decode safely ({width}x{height} = {width * height:,} pixels); expected an "
            f"image of at most {limit:,} pixels (PIL.Image.MAX_IMAGE_PIXELS)"
        )
