"""Turn the images an item names (files, data: URLs, http(s) URLs, embedded bytes) into checked `ImagePart`s.

A suite folder may come from anyone: a file is resolved inside the suite (or data) folder and may
not escape it by `..` or a symlink; the media type is sniffed from the bytes with Pillow, never
taken from the name; anything missing, not an image or over the size limits is one line naming the
item, raised while the suite is checked, before any request is sent. Remote URLs are refused unless
the plan says `remote: send` (the server fetches them) or `remote: fetch` (harness fetches them once).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from harness.errors import HarnessError
from harness.records import ImagePart

# OpenAI's documented per-image upload limit is 20 MB; servers differ, so a suite may lower or raise it.
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
# Pillow's own decompression-bomb threshold is ~89 Mpixels; an image a model is asked to read needs far fewer.
DEFAULT_MAX_PIXELS = 40_000_000
# What OpenAI-compatible servers accept as image_url data; anything else Pillow reads is re-encoded as PNG.
SENDABLE = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
REMOTE_MODES = ("refuse", "send", "fetch")
DETAILS = ("low", "high", "auto")
_SETTING_KEYS = {"max_edge", "detail", "max_bytes", "max_pixels", "remote"}


@dataclass(frozen=True)
class ImageSettings:
    """How a suite's images are read and sent (suite.yaml `images:`, overridden by the plan's `images:`)."""

    max_edge: int | None = None  # longest side in pixels; larger images are shrunk (aspect kept)
    detail: str | None = None  # OpenAI's detail hint, sent with every image_url part
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    remote: str = "refuse"

    @staticmethod
    def parse(raw: Any, where: str) -> "ImageSettings":
        if raw is None:
            return ImageSettings()
        if not isinstance(raw, Mapping):
            raise HarnessError(f"{where}: images must be a mapping of {', '.join(sorted(_SETTING_KEYS))}")
        unknown = sorted(set(raw) - _SETTING_KEYS)
        if unknown:
            raise HarnessError(
                f"{where}: unknown images setting(s) {', '.join(unknown)} (known: {', '.join(sorted(_SETTING_KEYS))})"
            )
        out: dict[str, Any] = {}
        for key in ("max_edge", "max_bytes", "max_pixels"):
            if raw.get(key) is not None:
                value = raw[key]
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise HarnessError(f"{where}: images.{key} must be a positive integer, got {value!r}")
                out[key] = value
        if raw.get("detail") is not None:
            if raw["detail"] not in DETAILS:
                raise HarnessError(f"{where}: images.detail must be one of {', '.join(DETAILS)}, got {raw['detail']!r}")
            out["detail"] = raw["detail"]
        if raw.get("remote") is not None:
            if raw["remote"] not in REMOTE_MODES:
                raise HarnessError(
                    f"{where}: images.remote must be one of {', '.join(REMOTE_MODES)}, got {raw['remote']!r}"
                )
            out["remote"] = raw["remote"]
        return ImageSettings(**out)

    def merged(self, raw: Any, where: str) -> "ImageSettings":
        """These settings with the plan's overrides on top."""
        over = ImageSettings.parse(raw, where)
        given = set(raw or {})
        return ImageSettings(**{k: getattr(over if k in given else self, k) for k in self.__dataclass_fields__})


class ImageProblem(ValueError):
    """One image of one item is unusable: the item id is added by the caller."""


def image_refs(value: Any) -> list[Any]:
    """An item's images field as a list (one path or URL alone is a list of one)."""
    if value is None or value == "":
        return []
    if isinstance(value, (str, Mapping, bytes)):
        return [value]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise ImageProblem(f"the images field must be a list of paths or URLs, got {type(value).__name__}")


def describe(ref: Any) -> str:
    """How an image is named in messages, exports and reports: its path or URL, never its bytes."""
    if isinstance(ref, Mapping):
        return str(ref.get("path") or "embedded image")
    if isinstance(ref, bytes):
        return "embedded image"
    text = str(ref)
    if text.startswith("data:"):
        return text[: text.find(",") + 1 if "," in text else 40][:60] + "…"
    return text


def _resolve_file(name: str, root: Path) -> Path:
    """The file `name` inside `root`; `..`, absolute paths and symlinks that lead outside are refused."""
    root = root.resolve()
    candidate = Path(name)
    if candidate.is_absolute():
        raise ImageProblem(f"image {name}: an absolute path; give a path relative to {root}")
    try:
        path = (root / candidate).resolve()
        if not path.is_relative_to(root):
            raise ImageProblem(
                f"image {name}: resolves outside {root} (through .. or a symlink); keep images inside it"
            )
        if not path.is_file():
            raise ImageProblem(f"image {name}: no such file in {root}")
    except ImageProblem:
        raise
    except (OSError, ValueError) as exc:  # a NUL byte, a name too long, a loop of symlinks
        raise ImageProblem(f"image {name!r}: not a usable path ({exc})") from None
    return path


def _data_url_bytes(url: str) -> bytes:
    head, comma, payload = url.partition(",")
    if not comma or not head.endswith(";base64"):
        raise ImageProblem("a data: URL must be base64 (data:<type>;base64,<data>)")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageProblem("a data: URL whose base64 payload does not decode") from None


def _fetch(url: str, max_bytes: int) -> bytes:
    """GET a remote image once (only with `remote: fetch`), refusing anything past the size limit."""
    import httpx2 as httpx

    try:
        with httpx.stream("GET", url, timeout=30.0, follow_redirects=True) as response:
            if response.status_code != 200:
                raise ImageProblem(f"image {url}: HTTP {response.status_code}")
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise ImageProblem(f"image {url}: larger than the {_mb(max_bytes)} limit")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise ImageProblem(f"image {url}: could not be fetched ({exc.__class__.__name__})") from None


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:g} MB"


@dataclass(frozen=True)
class RawImage:
    """An image's bytes as found (not yet checked), or a URL the server is to fetch."""

    source: str
    data: bytes = b""
    url: str = ""


def read_raw(ref: Any, root: Path, settings: ImageSettings) -> RawImage:
    """The bytes an image reference names (a file, data: URL, embedded bytes) or a URL to pass on."""
    if isinstance(ref, Mapping):  # parquet/Arrow image struct {"bytes": ..., "path": ...} (MMMU)
        data = ref.get("bytes")
        if isinstance(data, (bytes, bytearray)) and data:
            return RawImage(describe(ref), bytes(data))
        if ref.get("path"):
            return read_raw(str(ref["path"]), root, settings)
        raise ImageProblem("an embedded image with neither bytes nor a path")
    if isinstance(ref, (bytes, bytearray)):
        return RawImage("embedded image", bytes(ref))
    if not isinstance(ref, str) or not ref.strip():
        raise ImageProblem(f"an image reference must be a path or URL, got {ref!r}")
    if ref.startswith("data:"):
        return RawImage(describe(ref), _data_url_bytes(ref))
    if ref.startswith(("http://", "https://")):
        if settings.remote == "send":
            return RawImage(ref, url=ref)
        if settings.remote == "fetch":
            return RawImage(ref, _fetch(ref, settings.max_bytes))
        raise ImageProblem(
            f"image {ref}: a remote URL; harness does not send or fetch those unless the plan sets "
            f"images: {{remote: send}} (the server fetches it) or {{remote: fetch}} (harness fetches it)"
        )
    if "://" in ref.split("/", 1)[0] + "/" or ref.startswith(("file:", "ftp:")):
        raise ImageProblem(f"image {ref}: only files, data: URLs and http(s) URLs are supported")
    path = _resolve_file(ref, root)
    size = path.stat().st_size
    if size > settings.max_bytes:
        raise ImageProblem(f"image {ref}: {_mb(size)}, over the {_mb(settings.max_bytes)} limit (images.max_bytes)")
    return RawImage(ref, path.read_bytes())


def _open(raw: RawImage, settings: ImageSettings):
    from PIL import Image, UnidentifiedImageError

    if len(raw.data) > settings.max_bytes:
        raise ImageProblem(
            f"image {raw.source}: {_mb(len(raw.data))}, over the {_mb(settings.max_bytes)} limit (images.max_bytes)"
        )
    try:
        with warnings.catch_warnings():  # Pillow warns above ~89 Mpixels; our own limit says it in one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw.data))
    except Image.DecompressionBombError as exc:
        raise ImageProblem(f"image {raw.source}: too many pixels to open safely ({exc})") from None
    except UnidentifiedImageError:
        raise ImageProblem(f"image {raw.source}: not an image Pillow can read (PNG, JPEG, GIF, WebP, ...)") from None
    except (OSError, ValueError) as exc:
        raise ImageProblem(f"image {raw.source}: unreadable ({exc})") from None
    width, height = image.size
    if width * height > settings.max_pixels:
        raise ImageProblem(
            f"image {raw.source}: {width}x{height} pixels, over the {settings.max_pixels:,} limit (images.max_pixels)"
        )
    return image


def check_raw(raw: RawImage, settings: ImageSettings) -> tuple[int, int]:
    """Header check plus a full decode (a truncated file fails here, not at the server): (width, height)."""
    if raw.url:
        return (0, 0)
    image = _open(raw, settings)
    try:
        # A PNG's chunk checksums catch truncation and corruption without inflating the pixels (0.04 ms
        # against 7 ms for 1024x1024); other formats (JPEG's verify checks nothing) are decoded whole.
        if image.format == "PNG":
            image.verify()
        else:
            image.load()
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageProblem(f"image {raw.source}: damaged or truncated ({exc})") from None
    return image.size


def image_part(raw: RawImage, settings: ImageSettings) -> ImagePart:
    """The part sent: bytes in a sendable format, shrunk to max_edge if asked, with the media type sniffed."""
    if raw.url:
        return ImagePart(url=raw.url, detail=settings.detail, source=raw.source)
    image = _open(raw, settings)
    fmt = image.format or ""
    data = raw.data
    width, height = image.size
    too_big = settings.max_edge is not None and max(width, height) > settings.max_edge
    if too_big or fmt not in SENDABLE:
        try:
            image.load()
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageProblem(f"image {raw.source}: damaged or truncated ({exc})") from None
        if too_big:
            scale = settings.max_edge / max(width, height)
            width, height = max(1, round(width * scale)), max(1, round(height * scale))
            image = image.resize((width, height), _lanczos())
        fmt = fmt if fmt in ("PNG", "JPEG", "WEBP") else "PNG"
        if fmt == "JPEG" and image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        out = io.BytesIO()
        # No metadata carried over and fixed encoder settings: the same input gives the same bytes.
        image.save(out, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        data = out.getvalue()
    return ImagePart(
        data=data,
        media_type=SENDABLE[fmt],
        detail=settings.detail,
        source=raw.source,
        width=width,
        height=height,
    )


def _lanczos():
    from PIL import Image

    return Image.Resampling.LANCZOS


def digest_raw(raw: RawImage) -> str:
    return hashlib.sha256(raw.data or raw.url.encode()).hexdigest()
