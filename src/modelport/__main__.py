"""``python -m modelport``: the same command line as ``modelport``."""

import sys

from modelport.cli import main

sys.exit(main(sys.argv[1:]))
