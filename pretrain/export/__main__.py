"""`python -m zhtw.pretrain.export` runs `zhtw-export`."""

import sys

from zhtw.pretrain.export.merge import main

raise SystemExit(main(sys.argv[1:]))
