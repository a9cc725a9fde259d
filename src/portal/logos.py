"""The business's logo: an uploaded image checked and made into a PNG 50 px high with
Pillow (metadata dropped), in one thread per process. Storing it is
`db/office_settings.save_logo`.
"""

from __future__ import annotations

import asyncio
import io
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

LOGO_HEIGHT = 50
MAX_LOGO_BYTES = 2 * 1024 * 1024
# 4,000 × 4,000: takes a 12-megapixel phone photo of a van's decal, refuses the 36- and
# 81-megapixel files that decode to hundreds of MB. Checked from the file's header before
# anything is decoded; decoded, such an image is at most 64 MB (4 bytes a pixel).
MAX_LOGO_PIXELS = 16_000_000
MAX_LOGO_RATIO = 10  # width at most ten times the height
# Logos are decoded in one thread per process: uploads at once wait their turn instead
# of each holding a large decoded image (four at once took a server to 1.2 GiB), and the
# memory one decode used is reused by the next (in one thread, one malloc arena).
LOGO_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="logo")
# Shrink to about this many times the final height before the smooth resize (a JPEG is
# decoded at that reduced size right away).
DECODE_HEIGHT = LOGO_HEIGHT * 4
TRANSPOSE = {  # EXIF orientation -> the turn that shows the image upright
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
FORMAT_NAMES = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "GIF": "GIF", "BMP": "BMP"}
DECLARED_FORMATS = {
    "image/png": "PNG",
    "image/x-png": "PNG",
    "image/jpeg": "JPEG",
    "image/jpg": "JPEG",
    "image/pjpeg": "JPEG",
    "image/webp": "WEBP",
    "image/gif": "GIF",
    "image/bmp": "BMP",
    "image/svg+xml": "SVG",
    "image/tiff": "TIFF",
    "image/heic": "HEIC",
}
EXTENSION_FORMATS = {
    "png": "PNG",
    "jpg": "JPEG",
    "jpeg": "JPEG",
    "jpe": "JPEG",
    "webp": "WEBP",
    "gif": "GIF",
    "bmp": "BMP",
    "svg": "SVG",
    "tif": "TIFF",
    "tiff": "TIFF",
    "heic": "HEIC",
}
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP")
UPLOAD_KINDS = "a PNG, JPEG or WebP image"


def _format_name(fmt: str) -> str:
    return FORMAT_NAMES.get(fmt, fmt)


@dataclass(frozen=True)
class LogoFiles:
    """A processed logo: PNG 50 px high, its copy 100 px high for 2× screens (empty when
    the upload was under 100 px high: enlarged it would be no sharper) and its width in
    CSS pixels (what pages reserve for it, so nothing moves when it arrives)."""

    png: bytes
    png_2x: bytes
    width: int


async def read_logo(
    data: bytes, filename: str, content_type: str, size: int | None = None
) -> tuple[LogoFiles | None, str | None]:
    """`process_logo_files` in the logo thread (the event loop keeps serving meanwhile);
    `size` is the whole upload's size in bytes when known (`data` may be only its start)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        LOGO_THREAD, process_logo_files, data, filename, content_type, size
    )


def process_logo(
    data: bytes, filename: str = "", content_type: str = "", size: int | None = None
) -> tuple[bytes, str | None]:
    """`process_logo_files`, the PNG 50 px high only."""
    files, problem = process_logo_files(data, filename, content_type, size)
    return (files.png if files else b""), problem


def process_logo_files(
    data: bytes, filename: str = "", content_type: str = "", size: int | None = None
) -> tuple[LogoFiles | None, str | None]:
    """Check an uploaded logo and return it as PNGs 50 and 100 px high (metadata dropped).

    Refused: empty, over 2 MB, not an image, not PNG/JPEG/WebP, a file whose name or
    declared type says one image format while its content is another, a damaged file,
    or more than MAX_LOGO_PIXELS pixels (read from the header: nothing is decoded).
    Decoding is bounded: a JPEG is decoded at a reduced scale, and every image shrunk
    before it is converted or turned. Run it in the logo thread (`read_logo`).
    """
    if not data:
        return None, f"Choose a logo file to upload ({UPLOAD_KINDS})."
    if len(data) > MAX_LOGO_BYTES:
        # Only the first 2 MB and a byte are read: say the real size when the upload knows
        # it, never the size of the part that was read.
        if size is None:
            return None, "That file is more than 2 MB; a logo can be at most 2 MB."
        return None, f"That file is {size / (1024 * 1024):.1f} MB; a logo can be at most 2 MB."
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None, "That image has far too many pixels for a logo. Use a smaller image."
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None, f"That file isn't an image we can read. Upload {UPLOAD_KINDS}."
    actual = image.format or ""
    if actual not in ALLOWED_FORMATS:
        return None, f"That file is a {_format_name(actual)} image. Upload {UPLOAD_KINDS}."
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    declared = [
        DECLARED_FORMATS.get(content_type.split(";")[0].strip().lower()),
        EXTENSION_FORMATS.get(extension),
    ]
    for claim in declared:
        if claim is not None and claim != actual:
            return None, (
                f"That file says it is a {_format_name(claim)} image but it is really a "
                f"{_format_name(actual)} image. Save it again as {UPLOAD_KINDS} and upload that."
            )
    width, height = image.size
    if width < 1 or height < 1:
        return None, f"That image file is damaged or incomplete. Upload {UPLOAD_KINDS}."
    if width * height > MAX_LOGO_PIXELS:
        return None, (
            f"That image is {width} × {height} pixels ({width * height / 1e6:.0f} megapixels): "
            f"far too many pixels for a logo. A logo can have at most "
            f"{MAX_LOGO_PIXELS // 1_000_000} megapixels (4,000 × 4,000); save a smaller copy "
            "and upload that."
        )
    if width > height * MAX_LOGO_RATIO:
        return None, (
            f"That image is {width} × {height} pixels: too wide for a logo 50 pixels high. "
            f"Use an image at most {MAX_LOGO_RATIO} times as wide as it is high."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            upright = _decode_small(image)
            png = _png(upright, LOGO_HEIGHT)
            png_2x = _png(upright, LOGO_HEIGHT * 2) if upright.height >= LOGO_HEIGHT * 2 else b""
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning, EOFError):
        return None, f"That image file is damaged or incomplete. Upload {UPLOAD_KINDS}."
    width = max(1, round(upright.width * LOGO_HEIGHT / upright.height))
    return LogoFiles(png=png, png_2x=png_2x, width=width), None


def _png(image: Image.Image, height: int) -> bytes:
    """`image` resized to `height` pixels high, as an optimised PNG."""
    new_width = max(1, round(image.width * height / image.height))
    out = io.BytesIO()
    image.resize((new_width, height), Image.Resampling.LANCZOS).save(
        out, format="PNG", optimize=True
    )
    return out.getvalue()


def _decode_small(image: Image.Image) -> Image.Image:
    """Decode `image` (opened, checked) for the logo: upright, RGB or RGBA, small.
    It is shrunk as early as it can be: a JPEG decodes straight at 1/2, 1/4 or 1/8 of
    its size, anything else is box-reduced right after decoding; converting and turning
    happen on the small copy."""
    orientation = image.getexif().get(0x0112)
    if image.format == "JPEG":
        image.draft(None, (DECODE_HEIGHT, DECODE_HEIGHT))  # keeps both sides >= that
    image.load()
    if image.mode not in ("RGB", "RGBA"):
        has_alpha = image.mode in ("LA", "PA", "P") and (
            image.mode != "P" or "transparency" in image.info
        )
        image = image.convert("RGBA" if has_alpha or "A" in image.mode else "RGB")
    factor = min(image.size) // DECODE_HEIGHT
    if factor > 1:
        image = image.reduce(factor)
    if orientation in TRANSPOSE:
        image = image.transpose(TRANSPOSE[orientation])
    return image
