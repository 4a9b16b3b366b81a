"""`python -m pyraftlog`: the command line of pyraftlog/cli.py."""
import sys

from .cli import main

sys.exit(main())
