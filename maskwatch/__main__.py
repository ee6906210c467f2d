"""``python -m maskwatch``: the ``maskwatch`` command."""

import sys

from maskwatch.cli import main

sys.exit(main())
