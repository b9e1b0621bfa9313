#!/usr/bin/env python3
"""Draws Berth's app and tray icons as RGBA PNGs (no image library needed): a rounded square
with a berth's mooring bollard for the app, and a dot in the engine state's colour for the tray.
Run it to regenerate the committed PNGs."""
import struct
import zlib
from pathlib import Path

HERE = Path(__file__).parent


def png(path, size, pixel):
    rows = b"".join(
        b"\0" + b"".join(bytes(pixel(x, y)) for x in range(size)) for y in range(size)
    )

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0))
    data += chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")
    path.write_bytes(data)


def inside_rounded(x, y, size, r):
    cx = min(max(x, r), size - 1 - r)
    cy = min(max(y, r), size - 1 - r)
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def app_icon(size):
    def pixel(x, y):
        if not inside_rounded(x, y, size, size // 5):
            return (0, 0, 0, 0)
        u, v = x / size, y / size
        # A bollard: a cap, a neck and a base, in white on blue.
        post = (0.40 <= u <= 0.60 and 0.30 <= v <= 0.75) or (0.30 <= u <= 0.70 and 0.22 <= v <= 0.32)
        base = 0.22 <= u <= 0.78 and 0.72 <= v <= 0.80
        if post or base:
            return (255, 255, 255, 255)
        return (29, 99, 237, 255)

    return pixel


def dot(colour, size):
    def pixel(x, y):
        c = (size - 1) / 2
        d = ((x - c) ** 2 + (y - c) ** 2) ** 0.5
        if d <= size * 0.42:
            return (*colour, 255)
        return (0, 0, 0, 0)

    return pixel


png(HERE / "icon.png", 128, app_icon(128))
for state, colour in {
    "running": (34, 197, 94),
    "starting": (245, 158, 11),
    "stopped": (148, 163, 184),
    "error": (239, 68, 68),
}.items():
    png(HERE / f"tray-{state}.png", 32, dot(colour, 32))
