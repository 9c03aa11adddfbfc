"""Pure renderers: node lists, port blocks, temp dirs, `ray start` argv and env, entrypoint."""
from __future__ import annotations

import shlex

import pytest

from cluster.errors import ConfigError
from cluster.secrets import is_secret_name
from cluster.launcher.render import (
    PORT_CEILING, TAG_ENV, count_port_slots, count_visible_devices, expand_nodelist,
    render_entrypoint, render_ports, render_slot_order, render_start_argv,
    render_start_env, render_temp_dir,
)


@pytest.mark.parametrize("text,hosts", [
    ("n1", ["n1"]),
    ("n[1-3]", ["n1", "n2", "n3"]),
    ("n[1-2,7],gpu-[08-10]", ["n1", "n2", "n7", "gpu-08", "gpu-09", "gpu-10"]),
    ("a,b", ["a", "b"]),
    ("r[1-2]-ib[0-1]", ["r1-ib0", "r1-ib1", "r2-ib0", "r2-ib1"]),
])
def test_expand_nodelist(text: str, hosts: list[str]) -> None:
    assert expand_nodelist(text) == hosts


@pytest.mark.parametrize("text", ["n[1-3", "n[a-b]", "", "n[1-x]"])
def test_expand_nodelist_rejects_malformed(text: str) -> None:
    with pytest.raises(ConfigError, match="SLURM_JOB_NODELIST"):
        expand_nodelist(text)


def test_every_port_pinned_below_ephemeral_range_and_blocks_disjoint() -> None:
    base = 20000
    seen: set[int] = set()
    for slot in range(count_port_slots(base)):
        ports = render_ports(base, slot).all_ports()
        assert len(set(ports)) == len(ports)
        assert max(ports) < PORT_CEILING and min(ports) >= base
        assert not seen & set(ports)
        seen |= set(ports)


def test_port_base_out_of_range_is_config_error() -> None:
    with pytest.raises(ConfigError, match="port_base"):
        count_port_slots(32700)


def test_close_job_ids_get_different_slots_and_restart_moves_on() -> None:
    firsts = {render_slot_order(j, 0, 20000)[0] for j in range(4800, 4840)}
    assert len(firsts) == 40
    order = render_slot_order(4812, 0, 20000)
    assert sorted(order) == list(range(count_port_slots(20000)))
    assert render_slot_order(4812, 1, 20000)[0] != order[0]


def test_temp_dir_distinct_per_node_and_restart_and_short() -> None:
    dirs = {render_temp_dir("/tmp", 1234567, n, r) for n in range(3) for r in range(2)}
    assert len(dirs) == 6
    with pytest.raises(ConfigError, match="temp_root"):
        render_temp_dir("/scratch/a/rather/long/node/local/path", 1234567, 0, 0)


def _argv(head_address: str | None) -> list[str]:
    return render_start_argv(
        head_address=head_address, node_ip="10.0.0.5", node_name="n5", ports=render_ports(20000, 3),
        num_gpus=4, num_cpus=8, object_store_memory=10**8, temp_dir="/tmp/ray-9-0-0")


def test_head_argv_pins_every_port() -> None:
    argv, p = _argv(None), render_ports(20000, 3)
    for flag, value in [("--port", p.gcs), ("--dashboard-port", p.dashboard),
                        ("--ray-client-server-port", p.client_server),
                        ("--dashboard-agent-listen-port", p.agent_listen),
                        ("--dashboard-agent-grpc-port", p.agent_grpc),
                        ("--runtime-env-agent-port", p.runtime_env_agent),
                        ("--metrics-export-port", p.metrics_export),
                        ("--node-manager-port", p.node_manager),
                        ("--object-manager-port", p.object_manager),
                        ("--min-worker-port", p.min_worker), ("--max-worker-port", p.max_worker)]:
        assert f"{flag}={value}" in argv
    assert {"--head", "--block", "--disable-usage-stats", "--num-gpus=4", "--num-cpus=8",
            "--node-ip-address=10.0.0.5", "--node-name=n5", "--dashboard-host=10.0.0.5",
            "--temp-dir=/tmp/ray-9-0-0", "--object-store-memory=100000000"} <= set(argv)


def test_worker_argv_joins_head_without_head_ports() -> None:
    argv = _argv("10.0.0.1:20768")
    assert "--address=10.0.0.1:20768" in argv and "--head" not in argv
    assert not any(a.startswith(("--port=", "--dashboard-port=")) for a in argv)


def test_start_env_keeps_secrets_turns_off_usage_stats_and_pins_metric_ports() -> None:
    ports = render_ports(20000, 0)
    env = render_start_env({"WANDB_API_KEY": "s3cret", "RAY_ADDRESS": "x:1", "PATH": "/bin"},
                           ports, {"RAY_health_check_period_ms": "500"}, "12-0-0")
    assert env["WANDB_API_KEY"] == "s3cret" and "RAY_ADDRESS" not in env
    assert env["RAY_USAGE_STATS_ENABLED"] == "0"
    assert env["RAY_USAGE_STATS_REPORT_URL"] == "http://127.0.0.1:9/"
    assert env["DASHBOARD_METRIC_PORT"] == str(ports.dashboard_metric)
    assert env["AUTOSCALER_METRIC_PORT"] == str(ports.autoscaler_metric)
    assert env["RAY_health_check_period_ms"] == "500" and env[TAG_ENV] == "12-0-0"
    assert "s3cret" not in " ".join(_argv(None))


def test_entrypoint_quotes_and_changes_dir() -> None:
    line = render_entrypoint(["python3", "train.py", "--x", "a b", "$HOME"], "/opt/sl ime")
    assert line == "cd '/opt/sl ime' && exec python3 train.py --x 'a b' '$HOME'"
    assert shlex.split(render_entrypoint(["python3", "t.py"], None)) == ["exec", "python3", "t.py"]


@pytest.mark.parametrize("value,count", [(None, None), ("", 0), ("0,1,2,3", 4), ("2,3", 2),
                                         ("GPU-aa,GPU-bb", 2)])
def test_count_visible_devices(value: str | None, count: int | None) -> None:
    assert count_visible_devices(value) == count


def test_secret_names() -> None:
    assert is_secret_name("WANDB_API_KEY") and is_secret_name("HF_TOKEN")
    assert not is_secret_name("CUDA_DEVICE_MAX_CONNECTIONS") and not is_secret_name("PYTHONPATH")
