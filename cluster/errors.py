"""Typed errors a user or the cluster can cause, and the exit codes the CLIs map them to."""
from __future__ import annotations

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_CONFIG = 2
EXIT_INFRA = 3


class HoldemClusterError(Exception):
    """Base class: the message is one line, ready to print after `error: `."""

    exit_code = EXIT_INFRA


class ConfigError(HoldemClusterError):
    """Bad profile, bad command line, or a failed pre-submission check."""

    exit_code = EXIT_CONFIG


class ProfileError(ConfigError):
    """A profile file cannot be read, merged or validated."""


class CheckError(ConfigError):
    """A consistency check over the merged profile failed."""


class SlurmError(HoldemClusterError):
    """Slurm refused or failed a command (sbatch, sacct, scancel...)."""

    exit_code = EXIT_INFRA


class RayStartError(HoldemClusterError):
    """The Ray cluster inside the allocation could not be brought up or was lost."""

    exit_code = EXIT_INFRA


class NodeFault(RayStartError):
    """One node is to blame (lost mid-run, failed its GPU check): the launcher may leave it out of
    the requeued job (cluster/launcher/quarantine.py)."""

    def __init__(self, message: str, host: str, why: str) -> None:
        super().__init__(message)
        self.host, self.why = host, why


class JobFailedError(HoldemClusterError):
    """The workload itself (a stage's command, the Ray job) failed."""

    exit_code = EXIT_JOB_FAILED


class Interrupted(HoldemClusterError):
    """The launcher got SIGTERM/SIGINT, or Slurm's warning signal (SIGUSR2: preemption or the
    time limit coming); everything it started is being stopped."""

    exit_code = EXIT_INFRA
