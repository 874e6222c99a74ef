"""``python -m fuadnb``: see `fuadnb.cli`."""

import sys

from fuadnb.cli import main

sys.exit(main())
