"""Preflight checks: is this node ready to train? One finding per line, each with its fix.

Run by the launcher on every node before Ray starts (from the DoctorSpec in the launch spec) and by
`python -m cluster.doctor` (cluster/doctor.py) on a login or GPU node.

Checks: GPUs visible and of compute capability >= 7.5 (SGLang needs sm75+); what the train stage's
Python imports, asked of that interpreter with the PYTHONPATH the plan renders for the stage (one
subprocess running importlib.util.find_spec and importlib.metadata: nothing heavy is imported):
`slime` and `megatron.training`, transformer_engine (Megatron's default --transformer-impl), pydantic,
wandb, numpy 1.x, the rollout's packages, flash_attn and apex (warnings); slime and Megatron-LM at
the profile's paths; the input paths readable and `ref-load` a complete checkpoint (the completeness
rule of cluster/outputs.py); free disk for the save dir. Exit 0 when nothing blocks, 2 when a finding does.

Everything the checks touch on the machine goes through a `Probe`, so tests feed captured `nvidia-smi`
output or a fake interpreter environment.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from cluster.errors import ConfigError
from cluster.outputs import check_megatron_dir

MIN_COMPUTE_CAP = (7, 5)
# When nvidia-smi is too old for `compute_cap`: capability by marketing name (first match wins).
CAP_BY_NAME = (("H100", "9.0"), ("H200", "9.0"), ("H800", "9.0"), ("L40", "8.9"), ("L4", "8.9"),
               ("A100", "8.0"), ("A800", "8.0"), ("A30", "8.0"), ("A10", "8.6"), ("A40", "8.6"),
               ("RTX 30", "8.6"), ("T4", "7.5"), ("RTX 20", "7.5"), ("V100", "7.0"), ("P100", "6.0"),
               ("P40", "6.1"), ("K80", "3.7"))
PACKAGES = {
    "pybase64": "pip install pybase64 (slime's rollout imports it; the seed's known missing package)",
    "ray": "pip install 'ray[default]' (the version pinned by the project)",
    "sglang": "install SGLang 0.5.x (pip install 'sglang[all]') or run in the slimerl/slime image (container.image)",
    "pydantic": "pip install pydantic (Megatron's megatron.training imports it)",
    "wandb": "pip install wandb (slime imports it even with W&B off)",
}
# Missing only slows or limits the run: warnings.
OPTIONAL_PACKAGES = {
    "flash_attn": ("pip install flash-attn --no-build-isolation: misc.attention-backend = flash asks Transformer "
                   "Engine for FlashAttention, which needs it (or set misc.attention-backend: auto)"),
    "apex": ("Megatron takes some fused kernels from NVIDIA apex when Transformer Engine has none (the slimerl/slime "
             "image has it); install it if Megatron's log asks for it: pip install -v --no-build-isolation "
             "git+https://github.com/NVIDIA/apex"),
}
TE_INSTALL = ("pip install --no-build-isolation 'transformer_engine[pytorch]' or run in the slimerl/slime image "
              "(container.image)")
TE_FIX = (f"{TE_INSTALL}. The other --transformer-impl, local, is no way out for Qwen3: slime 624b824's Qwen "
          "loader knows only Transformer Engine's parameter names")
# Distribution versions read with importlib.metadata in the stage's environment (ray: for the version hook).
DISTS = ("numpy", "ray")
# The Ray releases the launcher is tested with (pyproject.toml's range): 2.55 is the first whose
# workers honour their own `ray start --temp-dir` (2.52-2.54 have token auth, but their workers
# ignore the flag and use the head's path: nodes sharing /tmp collide, and the launcher cannot
# remove a worker's temp dir); 2.60 the newest tested.
RAY_TESTED = ((2, 55), (2, 60))
RAY_TOKEN_AUTH = (2, 52)
DEFAULT_MIN_FREE_GB = 100.0  # one Qwen3-8B Megatron checkpoint with optimizer state is ~100 GB
NVIDIA_SMI = ["nvidia-smi", "--query-gpu=index,uuid,name,compute_cap", "--format=csv,noheader"]


@dataclass(frozen=True)
class Finding:
    check: str  # e.g. gpus, package:pybase64, slime, path:paths.prompt-data, disk
    ok: bool
    message: str  # one line: what was seen and, when not ok, what to do
    blocking: bool = True  # a failed blocking finding makes the doctor exit 2

    def line(self) -> str:
        tag = "ok" if self.ok else "error" if self.blocking else "warning"
        return f"{tag}: {self.check}: {self.message}"


@dataclass(frozen=True)
class GpuInfo:
    index: str
    uuid: str
    name: str
    compute_cap: str | None  # "8.0"; None when unknown


@dataclass(frozen=True)
class GpuReport:
    gpus: tuple[GpuInfo, ...]
    source: str  # nvidia-smi | /proc/driver/nvidia | CUDA_VISIBLE_DEVICES | none
    problem: str | None = None  # why detection was partial or failed


@dataclass(frozen=True)
class DoctorSpec:
    """What the checks need from a profile (plain data, so it can travel in a launch spec)."""

    gpus_per_node: int
    slime_dir: str | None
    megatron_dir: str | None
    inputs: dict[str, str | None]  # profile key -> path that must be readable
    save: str | None
    packages: tuple[str, ...] = tuple(PACKAGES)
    min_free_gb: float = DEFAULT_MIN_FREE_GB
    # The train stage's Python as the plan renders it: the entrypoint's interpreter (None: this one)
    # and its PYTHONPATH (None: this process's environment; a list replaces PYTHONPATH, as Ray's
    # runtime env does for the job).
    python: str | None = None
    pythonpath: tuple[str, ...] | None = None
    slime_installed: bool = False  # container.slime_installed: slime comes from the image, not paths.slime_dir
    transformer_impl: str = "transformer_engine"  # Megatron's --transformer-impl of the profile
    attention_backend: str | None = None  # misc.attention-backend (flash needs flash_attn)

    def to_dict(self) -> dict[str, Any]:
        out = {**asdict(self), "packages": list(self.packages)}
        out["pythonpath"] = None if self.pythonpath is None else list(self.pythonpath)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DoctorSpec:
        path = data.get("pythonpath")
        return cls(**{**data, "packages": tuple(data.get("packages", PACKAGES)),
                      "pythonpath": None if path is None else tuple(path)})


# --- reading the machine (the Probe) ------------------------------------------------------------

def parse_nvidia_smi(text: str) -> list[GpuInfo]:
    """`index, uuid, name, compute_cap` CSV rows (noheader); an unknown capability (`[N/A]`, or
    an old driver without the field) is guessed from the GPU's name."""
    gpus = []
    for row in text.strip().splitlines():
        cells = [c.strip() for c in row.split(",")]
        if len(cells) < 3 or not cells[0].isdigit():
            continue
        cap = cells[3] if len(cells) > 3 and _is_cap(cells[3]) else cap_from_name(cells[2])
        gpus.append(GpuInfo(cells[0], cells[1], cells[2], cap))
    return gpus


def _is_cap(text: str) -> bool:
    major, dot, minor = text.partition(".")
    return bool(dot) and major.isdigit() and minor.isdigit()


def cap_from_name(name: str) -> str | None:
    return next((cap for key, cap in CAP_BY_NAME if key.lower() in name.lower()), None)


def visible_subset(gpus: Sequence[GpuInfo], cuda_visible: str | None) -> list[GpuInfo]:
    """The GPUs CUDA_VISIBLE_DEVICES leaves visible (indices or UUIDs), all when unset."""
    if cuda_visible is None:
        return list(gpus)
    wanted = [w.strip() for w in cuda_visible.split(",") if w.strip()]
    if not wanted or wanted[0] in ("-1", "none", "NoDevFiles"):
        return []
    return [g for w in wanted for g in gpus if w in (g.index, g.uuid) or (w.startswith("GPU-") and g.uuid.startswith(w))]


def probe_gpus(env: Mapping[str, str], run: Callable[[list[str]], str] | None = None) -> GpuReport:
    """nvidia-smi first; without it, count /proc/driver/nvidia/gpus or CUDA_VISIBLE_DEVICES."""
    run = run or _run_nvidia_smi
    cuda_visible = env.get("CUDA_VISIBLE_DEVICES")
    try:
        out = run(NVIDIA_SMI)
    except FileNotFoundError:
        out, problem = None, "nvidia-smi not found"
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        out, problem = None, f"nvidia-smi failed ({_first_line(exc)})"
    if out is not None:
        return GpuReport(tuple(visible_subset(parse_nvidia_smi(out), cuda_visible)), "nvidia-smi")
    proc = Path("/proc/driver/nvidia/gpus")
    if proc.is_dir():
        gpus = [GpuInfo(str(i), p.name, "unknown", None) for i, p in enumerate(sorted(proc.iterdir()))]
        return GpuReport(tuple(visible_subset(gpus, cuda_visible)), "/proc/driver/nvidia", problem)
    if cuda_visible:
        gpus = [GpuInfo(w, w, "unknown", None) for w in cuda_visible.split(",") if w.strip() and w != "-1"]
        return GpuReport(tuple(gpus), "CUDA_VISIBLE_DEVICES", problem)
    return GpuReport((), "none", problem)


def _run_nvidia_smi(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        raise FileNotFoundError(argv[0])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0 and "compute_cap" in (proc.stdout + proc.stderr):
        # drivers before 510 do not know the field: ask without it, guess from the name
        proc = subprocess.run([argv[0], "--query-gpu=index,uuid,name", argv[2]], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, argv, proc.stdout, proc.stderr)
    return proc.stdout


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "stderr", None) or getattr(exc, "output", None) or str(exc)
    text = text.decode() if isinstance(text, bytes) else str(text)
    return (text.strip().splitlines() or ["no message"])[0]


def _dist_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def check_ray_version(spec: DoctorSpec, probe: Probe) -> list[Finding]:
    """Installed Ray against the tested range: below the floor blocks (no token auth, workers
    sharing the head's temp dir), above the newest tested warns."""
    if "ray" not in spec.packages:
        return []
    version = probe.version_of("ray")
    if version is None:
        return []  # check_packages reports a missing ray
    (lo, hi), fix = RAY_TESTED, "pip install 'ray[default]>=2.55,<2.61'"
    try:
        have = tuple(int(x) for x in version.split(".")[:2])
    except ValueError:
        return [Finding("ray-version", False, f"ray {version}: cannot compare with the tested range", blocking=False)]
    tested = f"{lo[0]}.{lo[1]} to {hi[0]}.{hi[1]}"
    if have < lo:
        lacks = ("has no token authentication and its" if have < RAY_TOKEN_AUTH else "has token authentication, but its")
        return [Finding("ray-version", False, f"ray {version} is older than the tested range {tested}: it {lacks} "
                        f"workers ignore their own --temp-dir (they take the head's); {fix}")]
    if have > hi:
        return [Finding("ray-version", False, f"ray {version} is newer than the tested range {tested}; it may work "
                        f"(the launcher sets RAY_AUTH_MODE explicitly) but is untested: {fix} to be safe",
                        blocking=False)]
    return [Finding("ray-version", True, f"ray {version} (tested range {tested})")]


# Run by the stage's interpreter: where each module would come from (importlib.util.find_spec for the
# top package, PathFinder within it, so not even a parent package's __init__ runs) and the versions
# of distributions (importlib.metadata). The cwd entry `-c` adds is dropped: the stage's own script
# dir is not what Ray's workers or the converter's `tools/` see.
_ENV_SCRIPT = r"""
import importlib.machinery, importlib.util, json, sys
from importlib import metadata
sys.path[:] = [p for p in sys.path if p not in ("", ".")]
names, dists = json.loads(sys.argv[1])
def find(name):
    parts = name.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])
        for i in range(1, len(parts)):
            if spec is None or not spec.submodule_search_locations:
                return None
            spec = importlib.machinery.PathFinder.find_spec(".".join(parts[:i + 1]), list(spec.submodule_search_locations))
    except (ImportError, ValueError) as exc:
        return {"error": "%s: %s" % (type(exc).__name__, exc)}
    if spec is None:
        return None
    origin = spec.origin if spec.origin not in (None, "namespace", "built-in", "frozen") else None
    return {"origin": origin, "locations": list(spec.submodule_search_locations or [])}
def version(name):
    try:
        return metadata.version(name)
    except Exception:
        return None
print(json.dumps({"executable": sys.executable, "version": "%d.%d.%d" % tuple(sys.version_info[:3]),
                  "modules": {n: find(n) for n in names}, "dists": {d: version(d) for d in dists}}))
"""


@dataclass(frozen=True)
class PythonEnv:
    """What an interpreter resolves with a given PYTHONPATH (nothing imported)."""

    python: str  # as asked: python3, or a path
    pythonpath: tuple[str, ...] | None  # None: the caller's environment
    executable: str | None = None  # what `python` resolved to
    version: str | None = None
    modules: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # name -> {origin, locations} | None
    dists: dict[str, str | None] = field(default_factory=dict)  # distribution -> version | None
    problem: str | None = None  # why the interpreter could not be asked

    def found(self, name: str) -> bool:
        info = self.modules.get(name)
        return bool(info) and "error" not in info

    def where(self, name: str) -> str:
        info = self.modules.get(name) or {}
        return info.get("origin") or ", ".join(info.get("locations") or []) or "?"

    def describe(self) -> str:
        path = "this environment's PYTHONPATH" if self.pythonpath is None else \
            f"PYTHONPATH={':'.join(self.pythonpath) or '(empty)'}"
        return f"{self.python} ({self.executable or '?'}) with {path}"

    def short(self) -> str:
        return f"the train stage's Python ({self.executable or self.python})"


def probe_python_env(python: str, pythonpath: tuple[str, ...] | None, names: Sequence[str],
                     dists: Sequence[str] = DISTS, env: Mapping[str, str] | None = None,
                     timeout_s: float = 120.0) -> PythonEnv:
    """Ask `python` (resolved on env's PATH), run with `pythonpath` as its whole PYTHONPATH, where
    `names` would import from and which `dists` are installed: one short subprocess."""
    env = dict(os.environ if env is None else env)
    exe = python if os.sep in python else shutil.which(python, path=env.get("PATH", os.defpath))
    if not exe or not os.access(exe, os.X_OK):
        return PythonEnv(python, pythonpath, problem=f"`{python}` is not on PATH" if os.sep not in python
                         else f"{python} does not exist or is not executable")
    if pythonpath is not None:
        env["PYTHONPATH"] = ":".join(pythonpath)
    try:
        proc = subprocess.run([exe, "-c", _ENV_SCRIPT, json.dumps([list(names), list(dists)])], env=env,
                              capture_output=True, text=True, timeout=timeout_s, cwd="/")
        data = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 and proc.stdout.strip() else None
    except subprocess.TimeoutExpired:
        return PythonEnv(python, pythonpath, exe, problem=f"{exe} did not answer within {timeout_s:g} s")
    except (OSError, ValueError) as exc:
        return PythonEnv(python, pythonpath, exe, problem=f"asking {exe} failed ({exc})")
    if not isinstance(data, dict):
        why = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return PythonEnv(python, pythonpath, exe, problem=f"{exe} could not run the check ({why})")
    return PythonEnv(python, pythonpath, data.get("executable") or exe, data.get("version"),
                     data.get("modules") or {}, data.get("dists") or {})


@dataclass(frozen=True)
class Probe:
    """Everything the checks read from the machine; replace a field to test."""

    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    gpus: Callable[[Mapping[str, str]], GpuReport] = probe_gpus
    version_of: Callable[[str], str | None] = lambda name: _dist_version(name)
    disk_free: Callable[[str], int] = lambda path: shutil.disk_usage(path).free
    readable: Callable[[str], bool] = lambda path: os.access(path, os.R_OK | (os.X_OK if os.path.isdir(path) else 0))
    writable: Callable[[str], bool] = lambda path: os.access(path, os.W_OK | os.X_OK)
    # (python, pythonpath, module names, env) -> what the stage's interpreter resolves
    python_env: Callable[[str, tuple[str, ...] | None, Sequence[str], Mapping[str, str]], PythonEnv] = \
        lambda python, pythonpath, names, env: probe_python_env(python, pythonpath, names, env=env)


# --- the checks: DoctorSpec + Probe -> findings ----------------------------------------------

def check_gpus(spec: DoctorSpec, probe: Probe) -> list[Finding]:
    report = probe.gpus(probe.env)
    want = spec.gpus_per_node
    if want == 0:
        return [Finding("gpus", True, "no GPUs needed (slurm.gpus_per_node = 0)")]
    why = f" ({report.problem})" if report.problem else ""
    if not report.gpus:
        return [Finding("gpus", False, f"no GPU visible on this node{why}; need {want}. Run on a GPU node "
                        "(check the partition, --gpus-per-node, CUDA_VISIBLE_DEVICES) with the NVIDIA driver loaded")]
    found = [Finding("gpus", len(report.gpus) >= want,
                     f"{len(report.gpus)} GPU(s) visible via {report.source}, need {want}" +
                     ("" if len(report.gpus) >= want else
                      f"{why}. Ask Slurm for --gpus-per-node={want} or lower slurm.gpus_per_node (--gpus-per-node)"))]
    return found + [_check_capability(g) for g in report.gpus]


def _check_capability(gpu: GpuInfo) -> Finding:
    what = f"GPU {gpu.index} ({gpu.name})"
    if gpu.compute_cap is None:
        return Finding(f"gpu{gpu.index}", False, f"{what}: compute capability unknown (no nvidia-smi "
                       "--query-gpu=compute_cap); make sure it is sm75 or newer (T4, A10, A100, H100...)", blocking=False)
    major, minor = (int(p) for p in gpu.compute_cap.split("."))
    if (major, minor) < MIN_COMPUTE_CAP:
        return Finding(f"gpu{gpu.index}", False, f"{what}: compute capability {gpu.compute_cap} is below 7.5; "
                       "SGLang needs sm75 or newer, so V100 (7.0) and P100 (6.0) cannot run the rollout. "
                       "Run on T4/A10/A100/H100-class GPUs (slurm.partition or slurm.constraint)")
    return Finding(f"gpu{gpu.index}", True, f"{what}: compute capability {gpu.compute_cap}")


def stage_python(spec: DoctorSpec, probe: Probe) -> PythonEnv:
    """The train stage's interpreter with the stage's PYTHONPATH, asked once for every module the
    checks need."""
    names = ["slime", "slime.rollout", "megatron.training", "transformer_engine", "numpy", *spec.packages,
             *OPTIONAL_PACKAGES]
    return probe.python_env(spec.python or sys.executable, spec.pythonpath, list(dict.fromkeys(names)), probe.env)


def check_packages(spec: DoctorSpec, probe: Probe) -> list[Finding]:
    """What the train stage's Python imports, resolved the way the stage runs it (its interpreter,
    its PYTHONPATH): slime and megatron.training, Transformer Engine, numpy 1.x, the packages slime
    and Megatron import at start-up, flash_attn/apex (warnings). Each finding says the fix."""
    env = stage_python(spec, probe)
    if env.problem:
        return [Finding("python", False, f"cannot ask the train stage's Python: {env.problem}; the entrypoint "
                        "(stages.train.entrypoint) must start an interpreter that exists on every node "
                        "(check PATH, or container.image)")]
    out = [Finding("python", True, f"{env.describe()}: Python {env.version or '?'}")]
    out += _source_imports(spec, env)
    out.append(_transformer_engine(spec, env))
    out.append(_numpy(env))
    for name in spec.packages:
        if env.found(name):
            out.append(Finding(f"package:{name}", True, f"{name} importable ({env.where(name)})"))
        else:
            fix = PACKAGES.get(name, f"pip install {name}")
            out.append(Finding(f"package:{name}", False, f"{name} is not importable by {env.short()}; {fix}"))
    for name, fix in OPTIONAL_PACKAGES.items():
        if name == "flash_attn" and spec.attention_backend not in (None, "flash"):
            continue
        if env.found(name):
            out.append(Finding(f"package:{name}", True, f"{name} importable ({env.where(name)})"))
        else:
            out.append(Finding(f"package:{name}", False, f"{name} is not importable by {env.short()}; {fix}",
                               blocking=False))
    return out


def _source_imports(spec: DoctorSpec, env: PythonEnv) -> list[Finding]:
    """`import slime` and `import megatron.training` as the convert and train stages will do them."""
    out = []
    if not env.found("slime"):
        fix = ("container.slime_installed is true, but the image's slime is not importable: pip install -e the slime "
               "checkout in the image, or set container.slime_installed: false so the plan puts paths.slime_dir on "
               "PYTHONPATH") if spec.slime_installed else (
               f"paths.slime_dir = {spec.slime_dir} must hold the slime checkout (its slime/ package; git clone "
               "https://github.com/THUDM/slime at 624b824): the plan puts that dir on PYTHONPATH")
        out.append(Finding("import:slime", False, f"`import slime` fails for {env.describe()}; {fix}"))
    else:
        where = env.where("slime")
        if not env.found("slime.rollout"):
            out.append(Finding("import:slime", False, f"`import slime` resolves to {where}, which is not THUDM/slime "
                               "(no slime/rollout/ there): the PyPI package named slime is an unrelated statistics "
                               "library; pip uninstall slime and use the checkout at paths.slime_dir", blocking=False))
        else:
            out.append(Finding("import:slime", True, f"`import slime` resolves to {where}"))
    if env.found("megatron.training"):
        out.append(Finding("import:megatron.training", True,
                           f"`import megatron.training` resolves to {env.where('megatron.training')}"))
    else:
        out.append(Finding("import:megatron.training", False, f"`import megatron.training` fails for {env.describe()}; "
                           f"paths.megatron_dir = {spec.megatron_dir} must be slime's Megatron-LM checkout (commit "
                           "1dcf0da, with megatron/training/): the plan puts it on PYTHONPATH. The megatron-core wheel "
                           "alone has no megatron.training"))
    return out


def _transformer_engine(spec: DoctorSpec, env: PythonEnv) -> Finding:
    if spec.transformer_impl != "transformer_engine":
        return Finding("package:transformer_engine", False, f"the profile sets --transformer-impl "
                       f"{spec.transformer_impl}; slime 624b824's Qwen3 loader knows only Transformer Engine's "
                       "parameter names, so converting and loading the checkpoint fail: remove "
                       f"transformer-impl from the profile (default transformer_engine) and {TE_INSTALL}",
                       blocking=False)
    if env.found("transformer_engine"):
        return Finding("package:transformer_engine", True, f"transformer_engine importable ({env.where('transformer_engine')}), "
                       "as --transformer-impl transformer_engine needs")
    return Finding("package:transformer_engine", False, f"transformer_engine is not importable by {env.short()}, "
                   f"but the profile's --transformer-impl is transformer_engine (Megatron's default); {TE_FIX}")


def _numpy(env: PythonEnv) -> Finding:
    version = env.dists.get("numpy")
    if not env.found("numpy"):
        return Finding("package:numpy", False, f"numpy is not importable by {env.short()}; pip install 'numpy<2'")
    if version is None:
        return Finding("package:numpy", False, f"numpy at {env.where('numpy')} has no installed version metadata; "
                       "make sure it is 1.x (slime asserts it): pip install 'numpy<2'", blocking=False)
    major = version.split(".")[0]
    if not major.isdigit() or int(major) >= 2:
        return Finding("package:numpy", False, f"numpy {version} is installed for {env.short()}, but slime asserts "
                       "numpy 1.x at import; pip install 'numpy<2' in that environment")
    return Finding("package:numpy", True, f"numpy {version} (slime needs 1.x)")


def check_ref_load(spec: DoctorSpec, probe: Probe) -> list[Finding]:
    """`ref-load` holds a complete Megatron checkpoint (cluster.outputs' completeness rule), not
    just an existing dir: slime falls back to it when paths.save has none."""
    path = spec.inputs.get("paths.ref-load")
    if not path or not Path(path).exists():
        return []  # check_inputs says it is unset or missing
    complete, reason = check_megatron_dir(path)
    if complete:
        return [Finding("ref-load", True, f"paths.ref-load: {reason}")]
    return [Finding("ref-load", False, f"paths.ref-load = {path} holds no complete checkpoint ({reason}); run the "
                    "convert stage (python -m cluster.submit --stages convert) or point REF_LOAD / paths.ref-load "
                    "at a converted torch_dist checkpoint")]


def check_sources(spec: DoctorSpec, probe: Probe) -> list[Finding]:
    """slime's train.py and Megatron-LM's `megatron` package at the profile's paths."""
    items = (("slime", "paths.slime_dir", spec.slime_dir, "train.py",
              "git clone https://github.com/THUDM/slime at commit 624b824 there, or fix paths.slime_dir"),
             ("megatron", "paths.megatron_dir", spec.megatron_dir, "megatron",
              "clone slime's Megatron-LM (commit 1dcf0da) there, or fix paths.megatron_dir"))
    out = []
    for check, key, root, inner, fix in items:
        target = Path(root or "") / inner
        if root and target.exists() and probe.readable(str(target)):
            out.append(Finding(check, True, f"{target} present"))
        else:
            seen = "not set" if not root else f"{target} is missing" if not target.exists() else f"{target} is not readable"
            out.append(Finding(check, False, f"{key} = {root}: {seen}; {fix}"))
    return out


def check_inputs(spec: DoctorSpec, probe: Probe) -> list[Finding]:
    out = []
    for key, path in spec.inputs.items():
        if not path:
            continue
        if not Path(path).exists():
            out.append(Finding(f"path:{key}", False, f"{key} = {path} does not exist; run the stage that makes it "
                               "(python -m cluster.submit --stages ...) or fix the path (--set / environment)"))
        elif not probe.readable(path):
            out.append(Finding(f"path:{key}", False, f"{key} = {path} is not readable by uid {os.getuid()}; fix its permissions"))
        else:
            out.append(Finding(f"path:{key}", True, f"{key} = {path} readable"))
    return out


def check_disk(spec: DoctorSpec, probe: Probe) -> list[Finding]:
    if not spec.save:
        return [Finding("disk", False, "paths.save is not set; give the checkpoint dir (SAVE_DIR or --set paths.save=DIR)")]
    existing = Path(spec.save)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the save dir is created by slime; its nearest parent holds the space
    if not probe.writable(str(existing)):
        return [Finding("disk", False, f"paths.save = {spec.save}: {existing} is not writable by uid {os.getuid()}; "
                        "fix its permissions or choose another save dir")]
    free_gb = probe.disk_free(str(existing)) / 1e9
    if free_gb < spec.min_free_gb:
        return [Finding("disk", False, f"paths.save = {spec.save}: {free_gb:.1f} GB free on {existing}, want at least "
                        f"{spec.min_free_gb:g} GB for checkpoints; free space or point SAVE_DIR at a bigger filesystem")]
    return [Finding("disk", True, f"paths.save = {spec.save}: {free_gb:.1f} GB free")]


CHECKS: tuple[Callable[[DoctorSpec, Probe], list[Finding]], ...] = (
    check_gpus, check_packages, check_ray_version, check_sources, check_inputs, check_ref_load, check_disk)


def run_doctor(spec: DoctorSpec, checks: Sequence[Callable[[DoctorSpec, Probe], list[Finding]]] = CHECKS,
               probe: Probe | None = None) -> list[Finding]:
    """Every finding of every check, passing ones included, in order."""
    probe = probe or Probe()
    return [finding for check in checks for finding in check(spec, probe)]


def blocking(findings: Sequence[Finding]) -> list[Finding]:
    return [f for f in findings if not f.ok and f.blocking]


def raise_on_blocking(findings: Sequence[Finding], where: str = "preflight") -> None:
    """For the launcher: one ConfigError line naming the first blocking finding (and how many)."""
    bad = blocking(findings)
    if bad:
        more = f" (+{len(bad) - 1} more: {', '.join(f.check for f in bad[1:])})" if len(bad) > 1 else ""
        raise ConfigError(f"{where}: {bad[0].check}: {bad[0].message}{more}. Details: python -m cluster.doctor")
