"""Per-job Ray token authentication (Ray 2.52+): one fresh random token per (job, restart).

Node 0 creates the token before its `ray start` in the run's own directory on the shared
filesystem (`restart-<n>/.auth/token`, directory 0700, file 0600, created atomically so it is never
readable by others, not even for a moment); the workers read it after head.json appears. Every
node starts Ray with `RAY_AUTH_MODE=token` and `RAY_AUTH_TOKEN_PATH` (never the token itself: the
environment of `ray start` reaches every worker process and the driver), and every HTTP call of the
launcher sends `Authorization: Bearer <token>`. The token is deleted at teardown.

The mode is always explicit (`token` or, with `ray.auth: disabled`, `disabled`): since Ray 2.59 a
head with RAY_AUTH_MODE unset turns auth on by itself when it finds `~/.ray/auth_token`, and a
token in RAY_AUTH_TOKEN would take precedence over the file; both are removed from the env.
The token value never goes to argv, the runtime env, chain.json, sbatch scripts or any log.
"""
from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from cluster.errors import ConfigError, RayStartError
from cluster.launcher.render import AUTH_ENV  # noqa: F401  (what Ray reads for its mode and token)

AUTH_MODES = ("token", "disabled")
REDACTED = "<ray-auth-token>"


def token_path(log_dir: Path) -> Path:
    return log_dir / ".auth" / "token"


def create_token(path: Path) -> str:
    """A new 256-bit token at `path` (dir 0700, file 0600, written under a temporary name and
    renamed, so a reader never sees a partial or group-readable file)."""
    token = secrets.token_hex(32)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)  # mkdir's mode is masked by the umask; exist_ok keeps an old mode
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, token.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as err:
        raise ConfigError(f"cannot create the Ray auth token at {path}: {err.strerror}. Check that "
                          f"the chain's log dir is writable (or set ray.auth: disabled)") from None
    return token


def read_token(path: Path) -> str:
    """The token node 0 wrote; refuses a file others could read or that is not ours."""
    try:
        st = path.stat()
        token = path.read_text().strip()
    except OSError as err:
        raise RayStartError(f"cannot read the job's Ray auth token {path}: {err.strerror} (node 0 "
                            f"writes it before head.json; is the shared filesystem the same here?)") from None
    if st.st_uid != os.getuid() or st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise RayStartError(f"the Ray auth token {path} has mode {stat.S_IMODE(st.st_mode):o} and owner "
                            f"uid {st.st_uid}; it must be 600 and yours. Not using it")
    if len(token) < 32:
        raise RayStartError(f"the Ray auth token {path} is empty or truncated")
    return token


def remove_token(path: Path) -> bool:
    """Delete the token and its directory; True if there was one."""
    try:
        path.unlink()
        found = True
    except FileNotFoundError:
        found = False
    for leftover in path.parent.glob(f".{path.name}.*"):  # a writer killed between open and rename
        leftover.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass
    return found


def render_auth_env(mode: str, path: Path | None) -> dict[str, str]:
    """The auth part of every node's `ray start` environment (the mode always set)."""
    if mode not in AUTH_MODES:
        raise ConfigError(f"ray.auth {mode!r} must be one of {', '.join(AUTH_MODES)}")
    if mode == "disabled":
        return {"RAY_AUTH_MODE": "disabled"}
    if path is None:
        raise ConfigError("ray.auth token needs the token's path")
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path)}


def redact(text: str, token: str | None) -> str:
    return text.replace(token, REDACTED) if token else text
