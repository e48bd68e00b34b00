"""Draw a flow file over its video: the same as ``flowvid overlay`` (see its --help).

python tools/overlay.py clip.mp4 flow.npy --out overlay.mp4 --style both
"""

import sys

from flowvid.cli import main

if __name__ == "__main__":
    sys.exit(main(["overlay", *sys.argv[1:]]))
