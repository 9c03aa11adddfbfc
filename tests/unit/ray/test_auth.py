"""Per-job Ray token: private file, explicit mode, never from the user's environment."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cluster.errors import ConfigError, RayStartError
from cluster.launcher import api
from cluster.launcher.auth import create_token, read_token, redact, remove_token, render_auth_env, token_path
from cluster.launcher.render import render_ports, render_start_env


def test_token_is_fresh_private_and_removed(tmp_path: Path) -> None:
    os.umask(0o022)
    path = token_path(tmp_path / "restart-0")
    first = create_token(path)
    assert len(first) == 64 and read_token(path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert create_token(path) != first  # a new one each time
    assert remove_token(path) and not path.parent.exists()
    assert not remove_token(path)


def test_a_readable_token_is_refused(tmp_path: Path) -> None:
    path = token_path(tmp_path)
    create_token(path)
    path.chmod(0o644)
    with pytest.raises(RayStartError, match="must be 600"):
        read_token(path)


def test_mode_always_explicit_and_user_settings_dropped(tmp_path: Path) -> None:
    user = {"RAY_AUTH_TOKEN": "x" * 64, "RAY_AUTH_MODE": "disabled", "RAY_AUTH_TOKEN_PATH": "/home/u/.ray/t",
            "PATH": "/bin"}
    path = tmp_path / "token"
    env = render_start_env(user, render_ports(20000, 0), {}, "t", auth=render_auth_env("token", path))
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN_PATH"] == str(path)
    assert "RAY_AUTH_TOKEN" not in env
    off = render_start_env(user, render_ports(20000, 0), {"RAY_AUTH_MODE": "token"}, "t",
                           auth=render_auth_env("disabled", path))
    assert off["RAY_AUTH_MODE"] == "disabled" and not {"RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"} & set(off)
    legacy = render_start_env(user, render_ports(20000, 0), {}, "t")  # callers that pass no auth
    assert legacy["RAY_AUTH_MODE"] == "disabled"
    with pytest.raises(ConfigError):
        render_auth_env("on", path)


def test_headers_and_redaction() -> None:
    assert api.auth_headers("abc") == {"Authorization": "Bearer abc"} and api.auth_headers(None) == {}
    assert redact("token abc in a line", "abc") == "token <ray-auth-token> in a line"
    assert redact("nothing", None) == "nothing"
    assert issubclass(api.ApiAuthRefused, RayStartError) and not issubclass(api.ApiAuthRefused, api.ApiUnavailable)
