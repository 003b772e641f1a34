import sys

from medstyle_gui.cli import main

sys.exit(main())
