"""`python -m keras_wrs.export RUN_DIR_OR_MODEL ...`: the export command line."""

import sys

from keras_wrs.export.cli import main

sys.exit(main())
