"""genq's temporary files on local disk, swept weekly by maintenance (seed 000).

What genq writes in temp, and what is left of it:
- vendor outputs being fetched (infra/fetch.py) and the embedded S3's large objects (var/s3/.spool)
  go to `TemporaryFile`s, which have no name on disk (Linux unlinks them at creation): nothing is
  left, however the process ends, and the spool directory is emptied at every start;
- the video simulator renders each clip in a `genq-sim-*` directory of the system temp directory,
  removed when the clip is done, but left behind when `genq run` is killed mid-render.
The sweep removes the entries of the temp directory that carry a genq prefix and in which nothing
changed for the bound (a render in progress writes all the time). Metrics files and worker
heartbeats under VAR_DIR are not temporary: a dead process's counters still count.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

PREFIXES = ("genq-sim-",)


@dataclass(frozen=True)
class Removed:
    files: int = 0
    bytes: int = 0


def root() -> Path:
    """The system temp directory (TMPDIR and friends), as the code that writes there sees it."""
    return Path(tempfile.gettempdir())


def sweep(where: Path, *, unchanged_since: datetime, prefixes: tuple[str, ...] = PREFIXES) -> Removed:
    """Remove every entry of `where` named with one of `prefixes` that nothing changed in since
    `unchanged_since`; what it held. An entry that cannot be read or removed is left alone."""
    files = size = 0
    for entry in sorted(where.iterdir()):
        if not entry.name.startswith(prefixes) or entry.is_symlink():
            continue
        try:
            held = _contents(entry)
            if max((mtime for _, _, mtime in held), default=0.0) >= unchanged_since.timestamp():
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            continue
        files += sum(1 for is_file, _, _ in held if is_file)
        size += sum(n for _, n, _ in held)
    return Removed(files, size)


def _contents(entry: Path) -> list[tuple[bool, int, float]]:
    """(is a file, bytes, mtime) of the entry and of everything under it, links not followed."""
    paths = [entry]
    if entry.is_dir():
        for folder, dirs, names in os.walk(entry):
            paths += [Path(folder, name) for name in (*dirs, *names)]
    found = []
    for path in paths:
        stat = path.lstat()
        is_file = path.is_file() and not path.is_symlink()
        found.append((is_file, stat.st_size if is_file else 0, stat.st_mtime))
    return found
