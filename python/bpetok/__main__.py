"""``python -m bpetok``: the same command line as the ``bpetok`` console script."""

import sys

from bpetok.cli import main

if __name__ == "__main__":
    sys.exit(main())
