"""``python -m kbook``: the same command line as the installed ``kbook`` script.

What it is not: it holds no logic; everything lives in :mod:`kbook.cli`.
"""

import sys

from kbook.cli import main

if __name__ == "__main__":
    sys.exit(main())
