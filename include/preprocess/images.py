"""Image verification: every image is read, identified by its content, decoded and hashed, in parallel.

Per image: the file must exist and decode completely (a truncated JPEG is caught, since
Pillow raises on a missing end of the entropy-coded data); the real format and mode come
from the content, not the file name. An RGB JPEG is accepted as it is. Anything else (a
PNG named ``.jpg``, RGBA, palette, grayscale, CMYK) is converted to a 3-channel RGB JPEG
(quality 95, as im2rec writes) under ``<output>/images/<relative path>`` when the policy is
``convert``, or rejected when it is ``reject``. Alpha is dropped, which is what OpenCV's
``imread`` (used by the notebook and im2rec) does with such files.

Accepted JPEGs are decoded in Pillow's draft mode (libjpeg's DCT scaling): every byte of
the entropy-coded data is still decoded, so truncation and corruption are still found, but
the full-size inverse DCT is skipped, which makes the check about 30 % cheaper than a full
decode. The pool is threads: Pillow's decoder, ``hashlib`` and fsspec's I/O release the
GIL, threads share S3 clients and start at once; bench/bench_ingest.py measures a process
pool on the same images against them (processes lost: their start-up and imports cost more
than the GIL-held part of each image).

The decoded image (at least 64 pixels a side, the resize phash reads; 1/4 or 1/8 scale for
photographs) also gives the perceptual hashes the quality gate compares to find
near-duplicate images: imagehash's DCT hash (``phash``) with 16 x 16 = 256 bits, of the image
and of its mirror (training flips images, so a mirrored copy is a copy). Hashing the draft
decode costs about 0.45 ms per image, against about 1 ms to decode again in the gate; resized
and re-encoded copies of BCCD images stay within 6 bits of their original, distinct images
are 88 bits or more apart (notes in :mod:`include.preprocess.quality.duplicates`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import posixpath
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from include import storage

POLICIES = ("convert", "reject")
CONVERTED_FOLDER = "images"
JPEG_QUALITY = 95
JPEG_SUFFIXES = (".jpg", ".jpeg")
HASH_SIZE = 16  # phash side: 256-bit hashes
HASHED_SIDE = 4 * HASH_SIZE  # phash reads a 64 x 64 resize: the draft decode keeps at least that


@dataclass(frozen=True)
class ImageCheck:
    """What verification found for one image file."""

    source_uri: str  # the image as the annotations name it
    image: str  # relative path the table uses (suffix .jpg when converted from another format)
    image_uri: str  # the file to train from: the source, or its converted copy
    width: int = 0
    height: int = 0
    depth: int = 0
    format: str = ""  # detected from the content: JPEG, PNG, ...
    mode: str = ""  # Pillow mode of the source: RGB, RGBA, P, L, CMYK, ...
    converted: bool = False
    content_hash: str = ""  # SHA-256 of the source file's bytes
    phash: str = ""  # perceptual hash (hex, 256 bits) of the decoded image
    phash_mirror: str = ""  # the same of its mirror image
    error: str | None = None  # why the image was rejected; None when accepted


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def perceptual_hashes(image: Any) -> tuple[str, str]:
    """``(phash, phash of the mirror)`` of a decoded PIL image, as hex strings (``str(ImageHash)``'s).

    phash's own 64 x 64 resize is done once for both (a mirror of the resize is the resize of the
    mirror), and the bits are packed with numpy: 0.44 ms an image instead of 1.2 ms for two
    ``str(imagehash.phash(...))`` calls, with the same hashes (a test checks them).
    """
    import imagehash
    import numpy as np
    from PIL import Image

    side = HASH_SIZE * 4  # phash's highfreq_factor
    small = image.convert("L").resize((side, side), Image.Resampling.LANCZOS)
    pair = (small, small.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    return tuple(np.packbits(imagehash.phash(x, hash_size=HASH_SIZE).hash).tobytes().hex() for x in pair)


def converted_names(images: Iterable[str]) -> dict[str, str]:
    """The name each image gets if it has to be converted to JPEG: ``.jpg`` suffix, unique in the set."""
    images = sorted(set(images))
    taken = set(images)
    out = {}
    for image in images:
        stem, suffix = posixpath.splitext(image)
        if suffix.lower() in JPEG_SUFFIXES:
            out[image] = image
        else:
            out[image] = f"{stem}.jpg" if f"{stem}.jpg" not in taken else f"{image}.jpg"
            taken.add(out[image])
    return out


def verify_image(source_uri: str, image: str, converted_name: str, output_uri: str, policy: str) -> ImageCheck:
    """Check one image and, when allowed, convert it to an RGB JPEG under ``output_uri``."""
    from PIL import Image, UnidentifiedImageError

    rejected = partial(ImageCheck, source_uri, image, source_uri)
    try:
        data = storage.read_bytes(source_uri)
    except FileNotFoundError:
        return rejected(error="missing image file")
    digest = content_hash(data)
    fmt, mode = "unknown", ""
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, mode, (width, height) = im.format or "unknown", im.mode, im.size
            accepted = fmt == "JPEG" and mode == "RGB"
            if accepted:
                side = min(width, max(width // 8, HASHED_SIDE)), min(height, max(height // 8, HASHED_SIDE))
                im.draft("RGB", side)
            im.load()
            hashes = perceptual_hashes(im)
            if accepted:
                return ImageCheck(source_uri, image, source_uri, width, height, 3, fmt, mode, False, digest, *hashes)
            if policy != "convert":
                return rejected(
                    format=fmt,
                    mode=mode,
                    content_hash=digest,
                    error=f"{fmt} image in mode {mode} is not an RGB JPEG (image policy {policy!r})",
                )
            buf = io.BytesIO()
            im.convert("RGB").save(buf, "JPEG", quality=JPEG_QUALITY)
    except UnidentifiedImageError:
        return rejected(content_hash=digest, error="not an image file (format not recognised)")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        what = "truncated" if "truncated" in str(exc) else "undecodable"
        return rejected(format=fmt, mode=mode, content_hash=digest, error=f"{what} {fmt} image: {exc}")
    target = storage.join(output_uri, CONVERTED_FOLDER, converted_name)
    storage.write_bytes(target, buf.getvalue())
    return ImageCheck(source_uri, converted_name, target, width, height, 3, fmt, mode, True, digest, *hashes)


def verify_images(
    images: dict[str, str], output_uri: str, policy: str = "convert", workers: int | None = None
) -> dict[str, ImageCheck]:
    """Verify ``{image_uri: relative image path}`` on a thread pool; returns ``{image_uri: ImageCheck}``.

    ``workers`` defaults to 4 threads per CPU (the work mixes I/O and decoding).
    """
    from include.preprocess.workers import default_workers

    if policy not in POLICIES:
        raise ValueError(f"unknown image policy {policy!r}; expected one of {', '.join(POLICIES)}")
    names = converted_names(images.values())
    uris = sorted(images)
    task = partial(verify_image, output_uri=storage.normalize(output_uri), policy=policy)
    with _truncated_images_refused(), ThreadPoolExecutor(max(1, workers or 4 * default_workers())) as pool:
        results = list(pool.map(task, uris, [images[u] for u in uris], [names[images[u]] for u in uris]))
    return {check.source_uri: check for check in results}


@contextlib.contextmanager
def _truncated_images_refused() -> Iterator[None]:
    """Make Pillow raise on truncated files while verifying, whatever the process set before.

    Importing gluoncv sets Pillow's process-wide ``ImageFile.LOAD_TRUNCATED_IMAGES = True``
    (gluoncv/data/mhp.py), which would silently pad a truncated JPEG with grey.
    """
    from PIL import ImageFile

    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous
