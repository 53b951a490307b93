"""Draw Outpost's app icons as PNG files, with nothing but the standard library.

Run `python webapp/static/icons/make_icons.py` to regenerate the PNGs beside this script.
The design: a blue rounded square with a white map pin (Outpost is the CRM you take into the
field). Shapes are signed distance functions, so edges are anti-aliased by coverage rather
than by supersampling. The maskable variants fill the whole square and keep the pin inside
the central safe zone (a circle of 40 % of the size), as the maskable-icon spec requires.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent

TOP = (0x34, 0x6C, 0xF0)  # gradient of the square, top to bottom (theme colour in between)
BOTTOM = (0x1B, 0x4D, 0xC9)
MARK = (0xFF, 0xFF, 0xFF)

Point = tuple[float, float]


def sd_circle(p: Point, c: Point, r: float) -> float:
    """Signed distance from p to a circle (negative inside)."""
    return math.hypot(p[0] - c[0], p[1] - c[1]) - r


def sd_polygon(p: Point, verts: list[Point]) -> float:
    """Signed distance from p to a simple polygon (Inigo Quilez's formulation)."""
    px, py = p
    d = (px - verts[0][0]) ** 2 + (py - verts[0][1]) ** 2
    sign = 1.0
    j = len(verts) - 1
    for i in range(len(verts)):
        (ax, ay), (bx, by) = verts[i], verts[j]
        ex, ey = bx - ax, by - ay
        wx, wy = px - ax, py - ay
        t = max(0.0, min(1.0, (wx * ex + wy * ey) / (ex * ex + ey * ey)))
        dx, dy = wx - ex * t, wy - ey * t
        d = min(d, dx * dx + dy * dy)
        c1, c2, c3 = py >= ay, py < by, ex * wy > ey * wx
        if (c1 and c2 and c3) or not (c1 or c2 or c3):
            sign = -sign
        j = i
    return sign * math.sqrt(d)


def sd_rounded_square(p: Point, size: float, radius: float) -> float:
    """Signed distance from p to a square of `size` (origin at its corner) with rounded corners."""
    half = size / 2
    qx = abs(p[0] - half) - (half - radius)
    qy = abs(p[1] - half) - (half - radius)
    outside = math.hypot(max(qx, 0.0), max(qy, 0.0))
    return outside + min(max(qx, qy), 0.0) - radius


def pin_shape(size: float, scale: float) -> tuple[Point, float, list[Point], float]:
    """The pin's head (centre, radius), its point (a triangle tangent to the head) and its hole."""
    cx = size / 2
    head = (cx, size / 2 - 0.08 * size * scale)
    radius = 0.20 * size * scale
    tip = (cx, size / 2 + 0.30 * size * scale)
    dist = tip[1] - head[1]
    # The two points where lines from the tip touch the head's circle.
    angle = math.acos(radius / dist)
    left = (head[0] - radius * math.sin(angle), head[1] + radius * math.cos(angle))
    right = (head[0] + radius * math.sin(angle), head[1] + radius * math.cos(angle))
    return head, radius, [left, tip, right], 0.42 * radius


def coverage(distance: float) -> float:
    """How much of a pixel a shape covers, from the signed distance at the pixel's centre."""
    return max(0.0, min(1.0, 0.5 - distance))


def render(size: int, maskable: bool) -> bytes:
    """RGBA rows of one icon, each row led by PNG filter byte 0."""
    head, radius, triangle, hole = pin_shape(size, 0.78 if maskable else 1.0)
    corner = 0.0 if maskable else 0.225 * size
    rows = bytearray()
    for y in range(size):
        t = y / (size - 1)
        bg = [round(TOP[k] + (BOTTOM[k] - TOP[k]) * t) for k in range(3)]
        rows.append(0)
        for x in range(size):
            p = (x + 0.5, y + 0.5)
            alpha = 1.0 if maskable else coverage(sd_rounded_square(p, size, corner))
            if alpha == 0.0:
                rows += b"\0\0\0\0"
                continue
            pin = min(sd_circle(p, head, radius), sd_polygon(p, triangle))
            mark = coverage(max(pin, -sd_circle(p, head, hole)))
            rgb = [round(bg[k] + (MARK[k] - bg[k]) * mark) for k in range(3)]
            rows += bytes((*rgb, round(255 * alpha)))
    return bytes(rows)


def png(width: int, height: int, raw: bytes) -> bytes:
    """A PNG file (8-bit RGBA, no interlace) around already-filtered rows."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


ICONS = {
    "icon-192.png": (192, False),
    "icon-512.png": (512, False),
    "maskable-192.png": (192, True),
    "maskable-512.png": (512, True),
    "apple-touch-icon.png": (180, True),  # iOS rounds the corners itself and wants no transparency
}


def main() -> None:
    """Write every icon beside this script."""
    for name, (size, maskable) in ICONS.items():
        (HERE / name).write_bytes(png(size, size, render(size, maskable)))
        print(f"wrote {name} ({size}x{size})")


if __name__ == "__main__":
    main()
