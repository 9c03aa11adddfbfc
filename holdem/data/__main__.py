"""`python -m holdem.data`: see holdem.data.cli."""
import sys

from holdem.data.cli import main

sys.exit(main())
