"""Saving a job's results: file names, a progress line, and writes that leave no half file behind."""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path
from types import TracebackType
from typing import Final, TextIO

CLEAR_LINE: Final = "\r\033[K"  # back to the line's start, erase it
EXTENSIONS: Final = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "video/mp4": "mp4",
    "model/gltf-binary": "glb",
    "model/obj": "obj",
    "model/mtl": "mtl",
    "model/stl": "stl",
    "model/vnd.usdz+zip": "usdz",
    "application/zip": "zip",
}


def result_name(job_id: str, index: int, content_type: str) -> str:
    """`{job_id}-{index}.{ext}`, index from 0 as genq stores them; `bin` for an unknown type."""
    media_type = content_type.split(";", maxsplit=1)[0].strip().lower()
    ext = EXTENSIONS.get(media_type) or (mimetypes.guess_extension(media_type) or ".bin").lstrip(".")
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', job_id)}-{index}.{ext}"  # an id never names another folder


class Progress:
    """A file's progress on `stream`: on a terminal one line rewritten as bytes arrive (`name  1.2 MB
    / 3.4 MB  35%`); elsewhere (a log) one line once it is saved. Silent without a stream."""

    def __init__(self, name: str, total: int, stream: TextIO | None) -> None:
        self._name, self._total, self._stream = name, total, stream
        self._live = stream is not None and stream.isatty()
        self._done, self._shown = 0, -1

    def advance(self, count: int) -> None:
        self._done += count
        percent = min(100, self._done * 100 // self._total) if self._total else 0
        if self._live and percent != self._shown:
            self._shown = percent
            self._write(f"{CLEAR_LINE}{self._name}  {human(self._done)} / {human(self._total)}  {percent:3d}%")

    def finish(self) -> None:
        if self._stream is not None:
            self._write((CLEAR_LINE if self._live else "") + f"{self._name}  {human(self._done)}\n")

    def _write(self, text: str) -> None:
        assert self._stream is not None
        self._stream.write(text)
        self._stream.flush()


def human(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


class PartFile:
    """Bytes go to `<path>.part`, renamed to `path` only once the download completed."""

    def __init__(self, path: Path, progress: Progress) -> None:
        self.path, self._part, self._progress = path, path.with_name(path.name + ".part"), progress

    def __enter__(self) -> PartFile:
        self._file = self._part.open("wb")
        return self

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._progress.advance(len(chunk))

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._file.close()
        if kind is None:
            self._part.replace(self.path)
            self._progress.finish()
        else:
            self._part.unlink(missing_ok=True)
