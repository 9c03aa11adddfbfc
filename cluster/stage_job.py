"""Compatibility name: jobs submitted before the launcher became a package pickled their stage
function as `cluster.stage_job.TrainCommand` / `StageCommand`; unpickling them needs this module.
The code is in cluster/launcher/stage.py."""
from cluster.launcher.stage import StageCommand, TrainCommand  # noqa: F401
