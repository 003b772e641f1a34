"""``python -m trainer`` (and ``torchrun ... -m trainer train gan ...``)."""

import sys

from trainer.train_cli import main

sys.exit(main())
