"""`python -m cluster.launch --spec launch.json`: the entry every train task runs (kept under this
name for job scripts and pickled jobs submitted before the launcher became a package); the code is
in cluster/launcher/."""
from __future__ import annotations

import sys

from cluster.launcher.main import main, run_node  # noqa: F401  (run_node: in-process callers)

if __name__ == "__main__":
    sys.exit(main())
