"""The profile's `container` section -> how a job step runs inside a container (pure).

    runtime: none       the step runs as is
    runtime: pyxis      srun --container-image=IMAGE --container-mounts=SRC:DST[:ro],...
                        --container-env=NAME,...   (pyxis/enroot on the srun command line)
    runtime: apptainer  apptainer exec --nv --bind SRC:DST[:ro],... IMAGE <argv>
                        env forced in through APPTAINERENV_<NAME>

`container.env` maps a name to a value. A value is exported in the job script; an empty value
means "take it from the job's environment" and nothing is written out — the only way for
secrets (WANDB_API_KEY, HF_TOKEN), which are refused with a value.
"""
from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

from cluster.errors import ConfigError
from cluster.secrets import is_secret_name

RUNTIMES = ("none", "pyxis", "apptainer")
MOUNT_MODES = ("ro", "rw")
WHERE = "container"


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    mode: str | None = None  # ro | rw | None (the runtime's default, rw)

    def render(self) -> str:
        return ":".join(p for p in (self.source, self.target, self.mode) if p)


@dataclass(frozen=True)
class ContainerSpec:
    """What the profile declares; `env` keeps (name, value) with value None = pass through."""

    runtime: str = "none"
    image: str | None = None
    mounts: tuple[Mount, ...] = ()
    env: tuple[tuple[str, str | None], ...] = ()

    @property
    def enabled(self) -> bool:
        return self.runtime != "none"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["mounts"] = [m.render() for m in self.mounts]
        # pass-through names show as "$NAME": the value lives in the job's environment only
        out["env"] = {name: value if value is not None else f"${name}" for name, value in self.env}
        return out


def parse_mount(text: Any, index: int = 0) -> Mount:
    """`SRC`, `SRC:DST` or `SRC:DST:ro|rw`, absolute paths, no commas."""
    where = f"{WHERE}.mounts[{index}]"
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{where} = {text!r}: expected a string SRC:DST[:ro|rw], e.g. /data:/data:ro.")
    parts = text.strip().split(":")
    if len(parts) > 3:
        raise ConfigError(f"{where} = {text!r}: too many ':' parts; write SRC:DST or SRC:DST:ro.")
    source, target, mode = (parts + [None, None])[:3]
    target = source if len(parts) == 1 else target  # `SRC` alone mounts at the same path
    if mode is not None and mode not in MOUNT_MODES:
        raise ConfigError(f"{where} = {text!r}: mode {mode!r} is not one of {', '.join(MOUNT_MODES)}.")
    for what, path in (("source", source), ("target", target)):
        if not path or not path.startswith("/"):
            raise ConfigError(f"{where} = {text!r}: {what} {path!r} must be an absolute path (starting with /).")
        if "," in path or any(c.isspace() for c in path):
            raise ConfigError(f"{where} = {text!r}: {what} contains ',' or a space, which the runtimes "
                              "cannot take in a mount list; use a path without them (e.g. a symlink).")
    return Mount(source, target, mode)


def _parse_env(env: Mapping[str, Any] | None) -> tuple[tuple[str, str | None], ...]:
    out = []
    for name, value in (env or {}).items():
        name = str(name)
        if not name.isidentifier() or not name.isascii():
            raise ConfigError(f"{WHERE}.env.{name}: not a valid environment variable name.")
        text = None if value is None or value == "" else str(value)
        if text is not None and is_secret_name(name):
            raise ConfigError(f"{WHERE}.env.{name}: looks like a secret and must not be written in a "
                              f"profile; set `{name}: ''` and export {name} in the job's environment.")
        out.append((name, text))
    return tuple(out)


def render_container(section: Mapping[str, Any] | None) -> ContainerSpec:
    """The profile's `container` section -> ContainerSpec; ConfigError (one line) when unusable."""
    section = section or {}
    runtime = section.get("runtime") or "none"
    if runtime not in RUNTIMES:
        raise ConfigError(f"{WHERE}.runtime = {runtime!r}: must be one of {', '.join(RUNTIMES)}.")
    image = section.get("image")
    mounts = section.get("mounts") or []
    if not isinstance(mounts, list):
        raise ConfigError(f"{WHERE}.mounts: expected a list of SRC:DST[:ro] strings, got {mounts!r}.")
    spec = ContainerSpec(runtime, image or None, tuple(parse_mount(m, i) for i, m in enumerate(mounts)),
                         _parse_env(section.get("env")))
    if spec.enabled:
        if not isinstance(image, str) or not image.strip():
            hint = "a .sif file or docker://..." if runtime == "apptainer" else "e.g. nvcr.io#nvidia/pytorch:24.07-py3 or a .sqsh file"
            raise ConfigError(f"{WHERE}.image is not set but {WHERE}.runtime = {runtime}; give the image ({hint}) "
                              f"or set {WHERE}.runtime: none.")
        if any(c.isspace() for c in image) or "," in image:
            raise ConfigError(f"{WHERE}.image = {image!r}: contains a space or ',', which no runtime accepts.")
    return spec


def _mount_list(spec: ContainerSpec) -> str:
    return ",".join(m.render() for m in spec.mounts)


def srun_args(spec: ContainerSpec) -> list[str]:
    """Options to add to `srun` (pyxis only; the others wrap the command instead)."""
    if spec.runtime != "pyxis":
        return []
    args = [f"--container-image={spec.image}"]
    if spec.mounts:
        args.append(f"--container-mounts={_mount_list(spec)}")
    if spec.env:
        args.append(f"--container-env={','.join(name for name, _ in spec.env)}")
    return args


def wrap_argv(spec: ContainerSpec, argv: Sequence[str]) -> list[str]:
    """The command a step runs: unchanged, or inside `apptainer exec`."""
    if spec.runtime != "apptainer":
        return list(argv)
    bind = ["--bind", _mount_list(spec)] if spec.mounts else []
    return ["apptainer", "exec", "--nv", *bind, str(spec.image), *argv]


def render_env_lines(spec: ContainerSpec) -> list[str]:
    """Shell lines the job script runs before the step. Values given in the profile are exported
    as literals; pass-through names are only checked and referenced, so a secret's value is never
    written to the script. Apptainer gets APPTAINERENV_<NAME>="${NAME}" to force them in."""
    if not spec.enabled:
        return []
    lines = []
    for name, value in spec.env:
        if value is None:
            lines.append(f': "${{{name}?error: container.env.{name} is taken from the job environment '
                         f'but {name} is not set; export it before submitting}}"')
        else:
            lines.append(f"export {name}={shlex.quote(value)}")
    if spec.runtime == "apptainer":
        lines += [f'export APPTAINERENV_{name}="${{{name}}}"' for name, _ in spec.env]
    return lines


def describe(spec: ContainerSpec, argv: Sequence[str] = ("<argv>",)) -> dict[str, Any]:
    """For --dry-run: the section as understood plus the step it produces."""
    return {**spec.to_dict(), "srun_args": srun_args(spec), "step": wrap_argv(spec, argv)}
