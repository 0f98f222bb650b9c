"""`vitdeploy deploy --devices devices.toml`: the ONNX artifacts made here, engines built, validated and
benchmarked on every device listed, in parallel (one thread per device: the work is remote).

devices.toml::

    [[device]]
    name = "orin-nano"            # names the device's column and its folder OUT/devices/NAME
    host = "jetson@orin-nano"     # as ssh takes it: user@host or a ~/.ssh/config alias
    python = "~/vitdeploy/bin/python"   # optional: the device's Python with vitdeploy (default python3)
    power_mode = "15W"            # optional: the nvpmodel mode expected; another one is a warning
    ssh_config = "~/.ssh/fleet"   # optional: an ssh config file for this device (ssh -F)

Per device, in one job folder on it (vitdeploy.pipeline.remote: one handshake, one upload of what it lacks):
build-engine for each precision's ONNX, the engines brought back to OUT/devices/NAME/ (hashes
checked), validate against the FP32 ONNX on the validation data, bench. Its result goes atomically
to OUT/devices/NAME/result.json, also when it failed (exit code and message); a re-run skips a device
whose result is ok and whose inputs did not change (--force redoes it). One device failing does not
stop the others; the report names it, and the command exits with the first failed device's code.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitdeploy.core.errors import (
    InputError,
    MissingDependencyError,
    ParityError,
    UsageError,
    VitdeployError,
)
from vitdeploy.core import manifest as manifests
from vitdeploy.core.io import (
    manifest_path,
    sha256_file,
    write_bytes_atomic,
    write_json_atomic,
)
from vitdeploy.pipeline.remote import RemoteConfig, Upload, check_fetched, conditions, remote_job

if TYPE_CHECKING:
    from vitdeploy.pipeline.run import DeployConfig
    from vitdeploy.core.steps import Steps

FLEET_SCHEMA = "vitdeploy.fleet-report/1"
DEVICES_DIR = "devices"
RESULT_FILE = "result.json"
KEYS = ("name", "host", "python", "power_mode", "ssh_config")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")


@dataclass(frozen=True)
class DeviceSpec:
    """One device of devices.toml."""

    name: str
    host: str
    python: str | None = None
    power_mode: str | None = None
    ssh_config: Path | None = None

    def remote(self) -> RemoteConfig:
        return RemoteConfig.create(self.host, self.python, self.ssh_config)


class DevicesFailed(VitdeployError):
    """Some devices of a fleet run failed: the exit code is the first failed device's."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _sha256(artifact: Path) -> str:
    """The artifact's sha256: its manifest's record, else hashed now."""
    m = manifests.read(artifact)
    return (m.sha256 if m else None) or sha256_file(artifact)


def load_devices(path: Path) -> tuple[DeviceSpec, ...]:
    """devices.toml's ``[[device]]`` tables; a malformed file is a one-line UsageError naming the key."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise MissingDependencyError("reading devices.toml on Python 3.10 needs tomli: pip install tomli") from None
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from None
    for key in doc:
        if key != "device":
            raise UsageError(f"{path}: unknown key '{key}': list devices as [[device]] tables")
    entries = doc.get("device")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise UsageError(f"{path}: key 'device' missing: list devices as [[device]] tables with name and host")
    specs: list[DeviceSpec] = []
    for i, entry in enumerate(entries, 1):
        where = f"{path}: device {i}"
        for key in entry:
            if key not in KEYS:
                raise UsageError(f"{where}: unknown key '{key}' (keys: {', '.join(KEYS)})")
        for key in ("name", "host"):
            if key not in entry:
                raise UsageError(f"{where}: key '{key}' missing")
        for key in ("name", "host", "python", "ssh_config"):
            if key in entry and (not isinstance(entry[key], str) or not entry[key].strip()):
                raise UsageError(f"{where}: key '{key}' must be a non-empty string")
        mode = entry.get("power_mode")
        if mode is not None and (isinstance(mode, bool) or not isinstance(mode, (str, int))):
            raise UsageError(f"{where}: key 'power_mode' must be a string or a number (the nvpmodel mode)")
        name = entry["name"]
        if not NAME.match(name):
            raise UsageError(f"{where}: key 'name' = {name!r}: letters, digits, '.', '_' and '-' only (it names a folder)")
        if any(s.name == name for s in specs):
            raise UsageError(f"{where}: key 'name' = {name!r} is given twice")
        ssh = entry.get("ssh_config")
        specs.append(DeviceSpec(name=name, host=entry["host"], python=entry.get("python"),
                                power_mode=None if mode is None else str(mode),
                                ssh_config=path.parent / Path(ssh).expanduser() if ssh else None))
    return tuple(specs)


def power_mode_warning(spec: DeviceSpec, reported: str | None) -> str | None:
    """A warning when the device's nvpmodel mode is not the one devices.toml expects ("mode 0" matches 0)."""
    if spec.power_mode is None:
        return None
    want = spec.power_mode.strip().lower()
    if reported is not None and want in (reported.lower(), reported.lower().removeprefix("mode ")):
        return None
    return (f"{spec.name}: power mode {reported or 'unknown (no nvpmodel)'}, devices.toml expects {spec.power_mode}: "
            "its latencies are not those of the expected mode")


@dataclass(frozen=True)
class FleetInputs:
    """What every device gets: the ONNX per precision, the validation data and sample count, what those are."""

    artifacts: dict[str, Path]
    data: Path
    samples: int | None
    which: str  # the validation images, in words (after their count)


def run_fleet(config: DeployConfig, inputs: FleetInputs, notes: list[str], skipped: list[str], warnings: list[str],
              steps: Steps) -> dict[str, Any]:
    """Every device of ``config.devices`` in parallel; the fleet report (also written to OUT/report.*)."""
    from vitdeploy import __version__
    from vitdeploy.bench import fleet_report as R
    from vitdeploy.pipeline.report import gated

    from vitdeploy.pipeline.state import digest as _digest

    thresholds = Path(config.thresholds) if config.thresholds and Path(config.thresholds).is_file() else config.thresholds
    shared = _digest(*inputs.artifacts.values(), inputs.data, inputs.samples, thresholds, config.on_error,
                     config.batches, config.iterations, config.warmup)  # hashed once, not once per device
    with ThreadPoolExecutor(max_workers=len(config.devices)) as pool:
        entries = list(pool.map(lambda spec: _device(spec, config, inputs, thresholds, shared, steps), config.devices))
    ok = [e for e in entries if e["status"] == "ok"]
    data = dict(ok[0]["validation_data"]) if ok else {}
    report = {
        "schema": FLEET_SCHEMA, "vitdeploy": __version__, "model": config.model,
        "checkpoint": str(config.checkpoint) if config.checkpoint else None,
        "calibration": str(config.calib) if config.calib else "built-in synthetic sample",
        "validation_data": {**data, "judged_on": f"{data.get('samples', '?')} {inputs.which}"},
        "precisions": list(inputs.artifacts), "batches": list(config.batches),
        "artifacts": {p: {"artifact": a.name, "sha256": _sha256(a)}
                      for p, a in inputs.artifacts.items()},
        "devices": entries, "notes": notes,
        "warnings": warnings + [w for e in entries for w in e.get("warnings", [])],
        "steps_skipped": skipped, "failed": [e["name"] for e in entries if e["status"] == "failed"],
        "passed": bool(ok) and len(ok) == len(entries) and all(e["passed"] for e in ok), "gated": gated(config),
        "files": {"markdown": "report.md", "devices": DEVICES_DIR},
    }
    out = config.out
    with steps.step("report"):
        try:
            report["files"]["plot"] = R.write_fleet_plot(report, out / "report.png").name
        except MissingDependencyError as exc:
            report["files"]["plot"] = None
            report["notes"].append(f"plot skipped: {exc}")
        write_json_atomic(out / "report.json", report)
        write_bytes_atomic(out / "report.md", R.fleet_markdown(report).encode())
    return report


def check_fleet(report: dict[str, Any], out: Path) -> None:
    """Failed devices: DevicesFailed with the first one's exit code; else, when gated, a validation failure is exit 6."""
    failed = [e for e in report["devices"] if e["status"] == "failed"]
    if failed:
        which = ", ".join(f"{e['name']} (exit {e['error']['exit_code']})" for e in failed)
        raise DevicesFailed(f"{len(failed)} of {len(report['devices'])} devices failed: {which}; "
                            f"what they said and the others' results: {out / 'report.md'}", failed[0]["error"]["exit_code"])
    bad = [f"{e['name']} {r['precision']}" for e in report["devices"] for r in e["precisions"] if r["validation"].startswith("FAIL")]
    if bad and report["gated"]:
        raise ParityError(f"{', '.join(bad)} failed validation; see {out / 'report.md'}")


def _device(spec: DeviceSpec, config: DeployConfig, inputs: FleetInputs, thresholds: str | Path | None, shared: str,
            steps: Steps) -> dict[str, Any]:
    """One device's entry: its stored result when unchanged (``shared``: the digest of what every
    device gets), else a fresh run; a failure is an entry too."""
    from vitdeploy.pipeline.state import digest as _digest

    folder = config.out / DEVICES_DIR / spec.name
    result = folder / RESULT_FILE
    digest = _digest(shared, asdict(spec), "fleet/2")
    previous = _stored(result, digest, config.out) if not config.force else None
    if previous is not None:
        with steps.step(f"{spec.name}: unchanged, skipped"):
            pass
        return {**previous, "resumed": True}
    try:
        entry = _run_device(spec, config, inputs, folder, thresholds, steps)
    except Exception as exc:  # noqa: BLE001 - isolated: this device's failure is its entry, the others go on
        code = exc.exit_code if isinstance(exc, VitdeployError) else 1
        message = str(exc) if isinstance(exc, VitdeployError) else f"internal error: {type(exc).__name__}: {exc}"
        entry = {"name": spec.name, "host": spec.host, "status": "failed", "error": {"exit_code": code, "message": message},
                 "precisions": [], "warnings": []}
        with steps.step(f"{spec.name}: FAILED") as rec:
            rec.status, rec.detail = "failed", f"exit {code}: {message}"
    entry = {**entry, "inputs": digest, "resumed": False}
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(result, entry)
    return entry


def _stored(result: Path, digest: str, out: Path) -> dict[str, Any] | None:
    """The stored result of a device when it was ok, for these inputs, and its engines are unchanged."""
    import json

    try:
        entry = json.loads(result.read_text())
    except (OSError, ValueError):
        return None
    engines = entry.get("engines") or {}
    fresh = entry.get("status") == "ok" and entry.get("inputs") == digest and engines and all(
        (out / e["path"]).is_file() and sha256_file(out / e["path"]) == e["sha256"] for e in engines.values())
    return entry if fresh else None


def _run_device(spec: DeviceSpec, config: DeployConfig, inputs: FleetInputs, folder: Path,
                thresholds: str | Path | None, steps: Steps) -> dict[str, Any]:
    from vitdeploy.pipeline.report import build_report, manifest_chain as _chain
    from vitdeploy.engine.config import default_output

    def stage(what: str, run: Callable[[], Any]) -> Any:
        with steps.step(f"{spec.name}: {what}"):
            return run()

    artifacts = inputs.artifacts
    limits = Upload(thresholds) if isinstance(thresholds, Path) else thresholds
    uploads = [Upload(p) for p in artifacts.values()] + [Upload(inputs.data)] + ([limits] if isinstance(limits, Upload) else [])
    engines = {p: folder / default_output(onnx, p).name for p, onnx in artifacts.items()}
    folder.mkdir(parents=True, exist_ok=True)
    with remote_job(spec.remote(), uploads, need_tensorrt=True) as job:
        steps_done = f"sent {len(job.sent)}, already there {len(job.reused)}"
        for p, onnx in artifacts.items():
            stage(f"engine {p}", lambda o=onnx, e=engines[p]: job.vitdeploy(["build-engine", Upload(o), "-o", e.name, "--force"]))
        job.fetch([(f.name, f) for e in engines.values() for f in (e, manifest_path(e))])
        names = [e.name for e in engines.values()]
        vdoc = stage("validate", lambda: job.vitdeploy(
            ["validate", Upload(artifacts["fp32"]), *names, "--data", Upload(inputs.data),
             "--samples", "all" if inputs.samples is None else str(inputs.samples), "--on-error", config.on_error]
            + (["--thresholds", limits] if limits else []), ok_codes=(0, 6)))
        bdoc = stage("bench", lambda: job.vitdeploy(
            ["bench", *names, "--batch", ",".join(map(str, config.batches)), "--iterations", str(config.iterations),
             "--warmup", str(config.warmup)]))
        vdoc, bdoc, env = job.relabel(vdoc), job.relabel(bdoc), job.env
    manifests = {p: check_fetched(e, spec.host) for p, e in engines.items()}  # hashes checked once, here
    judged = f"{vdoc['data']['samples']} {inputs.which}"
    rows = build_report(config, artifacts, engines, vdoc, bdoc, [], [], judged, [])["precisions"]
    for row in rows:  # the engine, then its ONNX's chain here (the engine's manifest names the device's copy)
        row["manifest_chain"] = row["manifest_chain"][:1] + _chain(artifacts[row["precision"]])
    jetson = env.get("jetson") or {}
    gpus = env.get("gpus") or []
    warning = power_mode_warning(spec, jetson.get("power_mode"))
    return {
        "name": spec.name, "host": spec.host, "status": "ok", "error": None,
        "tensorrt": ((env.get("packages") or {}).get("tensorrt") or {}).get("version"),
        "jetpack": jetson.get("jetpack"), "l4t": jetson.get("l4t"), "power_mode": jetson.get("power_mode"),
        "expected_power_mode": spec.power_mode, "power_mode_ok": warning is None,
        "gpu": gpus[0].get("name") if gpus else None,
        "conditions": f"{conditions(spec.host, env)}; {steps_done}", "validation_data": vdoc["data"],
        "passed": vdoc.get("passed", True), "precisions": rows,
        "warnings": ([warning] if warning else []) + [f"{spec.name}: {w}" for w in bdoc.get("warnings", [])],
        "engines": {p: {"path": e.relative_to(config.out).as_posix(), "sha256": manifests[p].sha256}
                    for p, e in engines.items()},
    }
