"""What the kernel says is mounted where (/proc/self/mountinfo, proc(5)): read without touching the
mount itself, so a stale FUSE mount cannot block the reader."""

from __future__ import annotations

import os
import re
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_entry(mount_point: Path, mountinfo: Path = MOUNTINFO) -> tuple[str, str] | None:
    """(filesystem type, source) of what is mounted at `mount_point` (the last mount there is the one
    seen), or None. The path is not resolved: resolving a stale mount fails."""
    target = os.path.join(os.path.realpath(mount_point.parent), mount_point.name)
    found = None
    for line in mountinfo.read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) >= 5 and len(rest) >= 2 and _unescape(fields[4]) == target:
            found = (rest[0], _unescape(rest[1]))
    return found
