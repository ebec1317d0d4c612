"""``python -m tfrs_pipeline.cli``: the ``tfrs-pipeline`` command."""

import sys

from tfrs_pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main())
