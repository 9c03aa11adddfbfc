"""Typed failures of the in-allocation launcher, each tied to one exit code.

0 ok, 1 the job (entrypoint) failed, 2 bad config/usage, 3 infrastructure (Ray or Slurm).
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_CONFIG = 2
EXIT_INFRA = 3


class LaunchError(Exception):
    """Base class: `str(err)` is the whole user-facing message."""

    exit_code = EXIT_INFRA


class LaunchConfigError(LaunchError):
    """The spec or the task's environment is wrong; nothing was started."""

    exit_code = EXIT_CONFIG


class RayStartError(LaunchError):
    """Ray or Slurm failed: a node lost, a deadline passed, GPUs disagree."""

    exit_code = EXIT_INFRA


class JobFailedError(LaunchError):
    """The entrypoint ran and ended FAILED or STOPPED."""

    exit_code = EXIT_JOB_FAILED


class Interrupted(LaunchError):
    """The launcher got SIGTERM/SIGINT; everything it started is being stopped."""

    exit_code = EXIT_INFRA
