"""Render the kernelspec PNG logos (logo-32x32.png, logo-64x64.png).

Pure Python: shapes are sampled on a supersampling grid (anti-aliasing by box
filter) and written as an RGBA PNG with zlib + struct.  The geometry mirrors
the hand-written ``logo-svg.svg`` (64 x 64 user units): a dark blue planet
with a white crater, the white letters "ai" and a small orbiting moon.

Usage::

    python kernelspec/make_logos.py            # writes both PNGs next to this file
    python kernelspec/make_logos.py 256 /tmp/preview.png
"""

from __future__ import annotations

import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

RGB = tuple[int, int, int]

NAVY: RGB = (0, 0, 128)
WHITE: RGB = (255, 255, 255)

VIEWBOX = 64.0
SUPERSAMPLE = 8


@dataclass(frozen=True)
class Shape:
    """A filled region in viewBox units with a solid colour."""

    colour: RGB
    contains: Callable[[float, float], bool]


def circle(cx: float, cy: float, r: float) -> Callable[[float, float], bool]:
    """Return a point test for a filled disc."""
    r2 = r * r
    return lambda x, y: (x - cx) ** 2 + (y - cy) ** 2 <= r2


def ring(cx: float, cy: float, r_out: float, r_in: float) -> Callable[[float, float], bool]:
    """Return a point test for an annulus (a stroked circle)."""
    o2, i2 = r_out * r_out, r_in * r_in
    return lambda x, y: i2 <= (x - cx) ** 2 + (y - cy) ** 2 <= o2


def rect(x0: float, y0: float, x1: float, y1: float) -> Callable[[float, float], bool]:
    """Return a point test for an axis-aligned rectangle."""
    return lambda x, y: x0 <= x <= x1 and y0 <= y <= y1


# Painted in order; later shapes cover earlier ones.  Keep in sync with logo-svg.svg.
SHAPES: list[Shape] = [
    Shape(NAVY, circle(28, 36, 26)),          # planet
    Shape(WHITE, circle(41.5, 22.5, 5.5)),    # crater
    Shape(WHITE, ring(21.5, 42, 7.5, 4)),     # "a" bowl
    Shape(WHITE, rect(25.5, 34.5, 29, 49.5)),  # "a" stem
    Shape(WHITE, rect(33, 34.5, 36.5, 49.5)),  # "i" stem
    Shape(WHITE, circle(34.75, 29.5, 2.25)),  # "i" dot
    Shape(NAVY, circle(55, 9, 7)),            # moon
]


def render(size: int, shapes: list[Shape] = SHAPES, samples: int = SUPERSAMPLE) -> bytes:
    """Rasterise *shapes* into ``size * size`` non-premultiplied RGBA bytes."""
    scale = VIEWBOX / size
    offsets = [(i + 0.5) / samples for i in range(samples)]
    n = samples * samples
    out = bytearray()
    for py in range(size):
        for px in range(size):
            r = g = b = a = 0
            for oy in offsets:
                y = (py + oy) * scale
                for ox in offsets:
                    x = (px + ox) * scale
                    for shape in reversed(shapes):
                        if shape.contains(x, y):
                            cr, cg, cb = shape.colour
                            r, g, b, a = r + cr, g + cg, b + cb, a + 1
                            break
            if a:
                out += bytes((round(r / a), round(g / a), round(b / a), round(255 * a / n)))
            else:
                out += b"\0\0\0\0"
    return bytes(out)


def encode_png(width: int, height: int, rgba: bytes) -> bytes:
    """Encode RGBA pixels (8 bits per channel) as a PNG file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    stride = width * 4
    raw = b"".join(b"\0" + rgba[y * stride:(y + 1) * stride] for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def write_logo(size: int, path: Path) -> None:
    """Render the logo at *size* pixels square and write it to *path*."""
    path.write_bytes(encode_png(size, size, render(size)))


def main(argv: list[str] | None = None) -> int:
    """Write the standard logos, or one logo of a given size to a given path."""
    args = sys.argv[1:] if argv is None else argv
    if args:
        write_logo(int(args[0]), Path(args[1]))
        return 0
    here = Path(__file__).resolve().parent
    for size in (32, 64):
        write_logo(size, here / f"logo-{size}x{size}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
