"""`python -m holdem.eval`: see holdem.eval.cli."""
import sys

from holdem.eval.cli import main

sys.exit(main())
