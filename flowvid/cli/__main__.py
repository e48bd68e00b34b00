"""``python -m flowvid.cli``."""

import sys

from flowvid.cli import main

sys.exit(main())
