"""`python -m pyraftlog`: the command line of pyraftlog/tools/cli.py."""
import sys

from .tools.cli import main

sys.exit(main())
