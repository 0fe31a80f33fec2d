"""Print requirements.lock without the packages named in one or more exclude files.

Used by the image builds: ``python lock_filter.py requirements.lock dev.txt > runtime.lock``.

requirements.lock pins the development environment, test and lint tools included; the
images install it with ``pip install --no-deps``, so dropping a package here is the only
way to keep it out of an image. An exclude file lists one package name a line (``#``
starts a comment). A name that is not in the lock stops the build: a stale list would
otherwise silently keep a renamed tool in every image.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path


def normalize(name: str) -> str:
    """PEP 503 form, so that ``PyYAML`` and ``pyyaml`` or ``a_b`` and ``a-b`` compare equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_names(path: str | Path) -> set[str]:
    names = set()
    for raw in Path(path).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            names.add(normalize(line))
    return names


def lock_name(line: str) -> str | None:
    """The package a lock line pins, or None for blank and comment lines."""
    line = line.split("#", 1)[0].strip()
    if not line:
        return None
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
    if match is None:
        raise ValueError(f"cannot read a package name from lock line {line!r}")
    return normalize(match.group(0))


def filter_lock(lock_text: str, excluded: Iterable[str]) -> str:
    """The lock's lines minus those pinning an excluded package; every excluded name must occur."""
    drop = {normalize(n) for n in excluded}
    kept, seen = [], set()
    for line in lock_text.splitlines():
        name = lock_name(line)
        if name is not None and name in drop:
            seen.add(name)
            continue
        kept.append(line)
    missing = sorted(drop - seen)
    if missing:
        raise ValueError(f"excluded but not in the lock (update the exclude list): {', '.join(missing)}")
    return "\n".join(kept) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: lock_filter.py LOCK EXCLUDE_FILE...", file=sys.stderr)
        return 2
    excluded: set[str] = set()
    for path in argv[1:]:
        excluded |= read_names(path)
    try:
        sys.stdout.write(filter_lock(Path(argv[0]).read_text(), excluded))
    except ValueError as exc:
        print(f"lock_filter: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
