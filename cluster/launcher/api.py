"""Ray's dashboard HTTP API with the standard library only (no `import ray` in the launcher).

Endpoints (Ray 2.x): `/api/version`, `/api/v0/nodes`, `/api/jobs/` (submit), `/api/jobs/<id>`.
Every call takes the job's auth token (cluster/launcher/auth.py) and sends it as
`Authorization: Bearer <token>`; a 401/403 is `ApiAuthRefused`, never "not up yet".
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from cluster.errors import RayStartError

TERMINAL_JOB_STATES = ("SUCCEEDED", "FAILED", "STOPPED")


class ApiUnavailable(Exception):
    """The dashboard did not answer (not up yet, or gone)."""


class ApiAuthRefused(RayStartError):
    """The dashboard answered 401/403: the token is missing or not this cluster's. Fatal: waiting
    longer never helps (Ray < 2.52 does not know token auth; another cluster may own the port)."""


@dataclass(frozen=True)
class NodeInfo:
    """One Ray node as the GCS sees it."""

    node_id: str
    name: str
    ip: str
    state: str
    gpus: int
    cpus: int
    is_head: bool


@dataclass(frozen=True)
class JobInfo:
    status: str
    message: str
    driver_exit_code: int | None


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _request(url: str, body: dict[str, Any] | None = None, timeout: float = 2.0,
             token: str | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                 headers={"Content-Type": "application/json", **auth_headers(token)})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace")[:500]
        if err.code in (401, 403):
            sent = "the job's token" if token else "no token (ray.auth: disabled)"
            raise ApiAuthRefused(
                f"{url}: HTTP {err.code} ({detail.strip()}) with {sent}: the Ray dashboard there wants "
                f"another token or none. Another cluster may own this port, or Ray's auth mode differs "
                f"from ray.auth (see docs/TROUBLESHOOTING.md, 'Ray token')") from None
        raise ApiUnavailable(f"{url}: HTTP {err.code}: {detail}") from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise ApiUnavailable(f"{url}: {err}") from None


def get_version(base: str, token: str | None = None) -> str:
    return str(_request(f"{base}/api/version", timeout=1.0, token=token)["ray_version"])


def parse_nodes(payload: dict[str, Any]) -> list[NodeInfo]:
    rows = payload["data"]["result"]["result"]
    return [
        NodeInfo(
            node_id=r["node_id"], name=r.get("node_name") or r["node_ip"], ip=r["node_ip"],
            state=r["state"], gpus=int(r.get("resources_total", {}).get("GPU", 0)),
            cpus=int(r.get("resources_total", {}).get("CPU", 0)), is_head=bool(r["is_head_node"]),
        )
        for r in rows
    ]


def list_nodes(base: str, token: str | None = None) -> list[NodeInfo]:
    try:
        return parse_nodes(_request(f"{base}/api/v0/nodes?detail=false&limit=10000", timeout=3.0, token=token))
    except (KeyError, TypeError) as err:
        raise ApiUnavailable(f"{base}/api/v0/nodes: unexpected reply ({err})") from None


def submit_job(base: str, submission_id: str, entrypoint: str, env_vars: dict[str, str],
               token: str | None = None) -> None:
    body = {"entrypoint": entrypoint, "submission_id": submission_id,
            "runtime_env": {"env_vars": env_vars} if env_vars else {}}
    # The first submission starts the job supervisor actor: allow more than the usual timeout.
    _request(f"{base}/api/jobs/", body=body, timeout=60.0, token=token)


def parse_job(payload: dict[str, Any]) -> JobInfo:
    code = payload.get("driver_exit_code")
    return JobInfo(status=payload["status"], message=payload.get("message") or "",
                   driver_exit_code=None if code is None else int(code))


def get_job(base: str, submission_id: str, token: str | None = None) -> JobInfo:
    try:
        return parse_job(_request(f"{base}/api/jobs/{submission_id}", timeout=3.0, token=token))
    except (KeyError, TypeError) as err:
        raise ApiUnavailable(f"{base}/api/jobs/{submission_id}: unexpected reply ({err})") from None


def get_job_logs(base: str, submission_id: str, token: str | None = None) -> str:
    return str(_request(f"{base}/api/jobs/{submission_id}/logs", timeout=10.0, token=token).get("logs", ""))
