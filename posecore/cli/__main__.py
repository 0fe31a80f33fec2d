"""``python -m posecore.cli``: the ``posecore`` command without its console script."""

import sys

from posecore.cli import main

sys.exit(main())
