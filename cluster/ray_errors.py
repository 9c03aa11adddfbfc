"""Typed failures of the in-allocation launcher: the project's own error classes (cluster/errors.py),
under the names the launcher code uses, each tied to one exit code.

0 ok, 1 the job (entrypoint) failed, 2 bad config/usage, 3 infrastructure (Ray or Slurm).
"""
from __future__ import annotations

from cluster.errors import (
    EXIT_CONFIG, EXIT_INFRA, EXIT_JOB_FAILED, EXIT_OK, ConfigError, JobFailedError, RayStartError,
)
from cluster.errors import HoldemClusterError as LaunchError

__all__ = ["EXIT_CONFIG", "EXIT_INFRA", "EXIT_JOB_FAILED", "EXIT_OK", "ConfigError", "Interrupted", "JobFailedError",
           "LaunchConfigError", "LaunchError", "RayStartError"]

LaunchConfigError = ConfigError  # the spec or the task's environment is wrong; nothing was started


class Interrupted(LaunchError):
    """The launcher got SIGTERM/SIGINT, or Slurm's warning signal (SIGUSR2: preemption or the
    time limit coming); everything it started is being stopped."""

    exit_code = EXIT_INFRA
