"""``python examples/pysyncobj_demo [options]``: runs the demo (main.py)."""

import os
import sys

# Run as a directory, Python puts the directory itself first on sys.path,
# not its parent: the parent makes it importable as the package
# pysyncobj_demo, whose modules import one another relatively.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pysyncobj_demo.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
