"""``python -m trainer ...`` is the same command line as ``medstyle`` (for torchrun)."""

import sys

from medstyle_gui.cli import main

sys.exit(main())
