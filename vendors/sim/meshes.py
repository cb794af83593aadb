"""Hunyuan 3D's models, simulated: one simple model (a turned vase), as GLB, OBJ and a preview.

The shape and colour follow the job's input (a prompt, or an image's bytes), so two jobs with the
same input get the same model. `detail` is how many segments go around it and along it: 256 (at
`media_scale` 1) gives ~130k triangles, a GLB of ~3.7 MB and an OBJ zip of about as much, the
weight of a vendor's model; the preview is a flat-shaded render at `PREVIEW_SIDE`.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import struct
import zipfile
from array import array
from dataclasses import dataclass
from typing import Final

from PIL import Image, ImageDraw

from vendors.sim.media import encode, font

DETAIL: Final = 256
PREVIEW_SIDE: Final = 512
_ZIP_TIME: Final = (2025, 5, 13, 0, 0, 0)
_LIGHT: Final = (-0.45, 0.55, 0.7)


@dataclass(frozen=True)
class Mesh:
    """Flat arrays, as glTF wants them: xyz per vertex, a unit normal per vertex, uv, and
    counter-clockwise triangles (three vertex indices each)."""

    positions: array[float]
    normals: array[float]
    uvs: array[float]
    indices: array[int]
    colour: tuple[float, float, float]

    @property
    def vertex_count(self) -> int:
        return len(self.positions) // 3


def vase(subject: str, detail: int) -> Mesh:
    """A surface of revolution whose profile (and colour) come from `subject`'s hash."""
    digest = hashlib.sha256(subject.encode()).digest()
    bulges = [(0.5 + digest[i] / 255, 1 + digest[i + 3] % 3) for i in range(3)]
    around, along = max(8, detail), max(4, detail)

    def radius(v: float) -> float:
        return 0.22 + sum(a * 0.08 * math.sin(math.pi * v * k) ** 2 for a, k in bulges) + 0.05 * (1 - v)

    positions, normals, uvs = array("f"), array("f"), array("f")
    for j in range(along + 1):
        v = j / along
        r, slope = radius(v), (radius(min(1.0, v + 1e-3)) - radius(max(0.0, v - 1e-3))) / 2e-3
        ny = -slope / math.hypot(1, slope)  # the profile's normal, in the (r, y) plane
        nr = 1 / math.hypot(1, slope)
        for i in range(around + 1):
            theta = math.tau * i / around
            c, s = math.cos(theta), math.sin(theta)
            positions.extend((r * c, v, r * s))
            normals.extend((nr * c, ny, nr * s))
            uvs.extend((i / around, 1 - v))
    indices = array("I")
    row = around + 1
    for j in range(along):
        for i in range(around):
            a, b = j * row + i, (j + 1) * row + i
            indices.extend((a, b, a + 1, a + 1, b, b + 1))
    colour = (0.25 + digest[6] / 400, 0.25 + digest[7] / 400, 0.25 + digest[8] / 400)
    return Mesh(positions, normals, uvs, indices, colour)


def glb(mesh: Mesh, name: str) -> bytes:
    """glTF 2.0 binary: a JSON chunk and a BIN chunk with positions, normals, uvs and indices."""
    blobs = [mesh.positions.tobytes(), mesh.normals.tobytes(), mesh.uvs.tobytes(), mesh.indices.tobytes()]
    offsets = [sum(len(b) for b in blobs[:i]) for i in range(len(blobs))]
    xs, ys, zs = mesh.positions[0::3], mesh.positions[1::3], mesh.positions[2::3]
    count = mesh.vertex_count
    gltf = {
        "asset": {"version": "2.0", "generator": "genq hunyuan3d simulator"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": name}],
        "meshes": [{"name": name, "primitives": [
            {"attributes": {"POSITION": 0, "NORMAL": 1, "TEXCOORD_0": 2}, "indices": 3, "material": 0}]}],
        "materials": [{"name": "glaze", "pbrMetallicRoughness": {
            "baseColorFactor": [*mesh.colour, 1.0], "metallicFactor": 0.0, "roughnessFactor": 0.45}}],
        "buffers": [{"byteLength": sum(len(b) for b in blobs)}],
        "bufferViews": [
            *({"buffer": 0, "byteOffset": offsets[i], "byteLength": len(blobs[i]), "target": 34962} for i in range(3)),
            {"buffer": 0, "byteOffset": offsets[3], "byteLength": len(blobs[3]), "target": 34963},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": count, "type": "VEC3",
             "min": [min(xs), min(ys), min(zs)], "max": [max(xs), max(ys), max(zs)]},
            {"bufferView": 1, "componentType": 5126, "count": count, "type": "VEC3"},
            {"bufferView": 2, "componentType": 5126, "count": count, "type": "VEC2"},
            {"bufferView": 3, "componentType": 5125, "count": len(mesh.indices), "type": "SCALAR"},
        ],
    }  # fmt: skip
    document = json.dumps(gltf, separators=(",", ":")).encode()
    document += b" " * (-len(document) % 4)  # chunks are 4-byte aligned; JSON pads with spaces
    binary = b"".join(blobs)
    binary += bytes(-len(binary) % 4)
    chunks = struct.pack("<I4s", len(document), b"JSON") + document + struct.pack("<I4s", len(binary), b"BIN\x00")
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunks) + len(binary)) + chunks + binary


def obj_zip(mesh: Mesh, name: str) -> bytes:
    """The OBJ result as ai3d ships it: a zip of `model.obj` + `model.mtl`."""
    p, n, t = mesh.positions, mesh.normals, mesh.uvs
    lines = [f"# genq hunyuan3d simulator {name}", "mtllib model.mtl", "o model"]
    lines += [f"v {p[i]:.5f} {p[i + 1]:.5f} {p[i + 2]:.5f}" for i in range(0, len(p), 3)]
    lines += [f"vt {t[i]:.5f} {t[i + 1]:.5f}" for i in range(0, len(t), 2)]
    lines += [f"vn {n[i]:.4f} {n[i + 1]:.4f} {n[i + 2]:.4f}" for i in range(0, len(n), 3)]
    lines.append("usemtl glaze")
    corners = iter(i + 1 for i in mesh.indices)  # OBJ counts from 1
    lines += [f"f {a}/{a}/{a} {b}/{b}/{b} {c}/{c}/{c}" for a, b, c in zip(corners, corners, corners, strict=True)]
    r, g, b = mesh.colour
    mtl = f"newmtl glaze\nKa 0 0 0\nKd {r:.4f} {g:.4f} {b:.4f}\nKs 0.2 0.2 0.2\nNs 40\nd 1\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for member, text in (("model.obj", "\n".join(lines) + "\n"), ("model.mtl", mtl)):
            archive.writestr(zipfile.ZipInfo(member, _ZIP_TIME), text, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def preview(mesh: Mesh, side: int, caption: str) -> bytes:
    """A flat-shaded render from slightly above (far triangles first), with a caption: PNG."""
    image = Image.new("RGB", (side, side), (236, 236, 240))
    draw = ImageDraw.Draw(image)
    p, k = mesh.positions, mesh.indices
    tilt = math.radians(20)
    ct, st = math.cos(tilt), math.sin(tilt)

    def project(i: int) -> tuple[float, float, float]:
        x, y, z = p[3 * i], p[3 * i + 1] - 0.5, p[3 * i + 2]
        y, z = y * ct - z * st, y * st + z * ct
        return side / 2 + x * side * 0.8, side * 0.5 - y * side * 0.8, z

    points = [project(i) for i in range(mesh.vertex_count)]
    triangles = sorted(zip(k[0::3], k[1::3], k[2::3], strict=True), key=lambda t: sum(points[i][2] for i in t))
    for tri in triangles:
        (x0, y0, _), (x1, y1, _), (x2, y2, _) = (points[i] for i in tri)
        nx, ny, nz = (sum(mesh.normals[3 * i + axis] for i in tri) / 3 for axis in range(3))
        normal = (nx, ny * ct - nz * st, ny * st + nz * ct)
        light = max(0.15, sum(a * b for a, b in zip(normal, _LIGHT, strict=True)) / math.hypot(*_LIGHT))
        colour = tuple(round(255 * min(1.0, c * (0.35 + 0.9 * light))) for c in mesh.colour)
        draw.polygon([(x0, y0), (x1, y1), (x2, y2)], fill=colour)
    draw.text((side * 0.04, side * 0.9), caption[:60], font=font(max(8, side // 28)), fill=(60, 60, 70))
    return encode(image, "PNG")
