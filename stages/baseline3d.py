"""Stage ``baseline3d``: the per-frame lifter (``lift.baseline``) beside the temporal one; see :mod:`stages.train3d`.

Its own module so that every ``dvc.yaml`` stage is one ``stages/<name>.py`` (tools that time the
stages match processes to stages by module name).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from stages import train3d


def main(argv: Sequence[str] | None = None) -> int:
    return train3d.main(["--baseline", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
