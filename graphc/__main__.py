"""`python -m graphc ...` is the `graphc` command (see graphc/cli.py)."""
import sys

from graphc.cli import main

sys.exit(main())
