"""``python -m flowvid`` is the ``flowvid`` command."""

import sys

from flowvid.cli import main

sys.exit(main())
