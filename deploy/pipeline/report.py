"""The report of `vitdeploy deploy` (OUT/report.json and report.md): accuracy and latency of every
precision side by side, the conditions they were measured in, and each artifact's manifest chain
(the artifact, its parent ONNX, ..., the checkpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitdeploy.core.io import read_manifest, sha256_file

if TYPE_CHECKING:
    from vitdeploy.pipeline.run import DeployConfig

REPORT_SCHEMA = "vitdeploy.deploy-report/1"


def gated(config: DeployConfig) -> bool:
    """Validation failures fail the run (exit 6, as `vitdeploy validate`) when judged on real data. With
    random weights (a zoo model without --checkpoint) validate itself judges only what still means
    something there (cosine, max abs; not top-1 agreement), so those verdicts gate too."""
    return config.calib is not None or config.data is not None


def manifest_chain(path: Path) -> list[dict[str, Any]]:
    """The manifest chain of an artifact: itself, its parent ONNX, ..., up to the checkpoint."""
    chain = []
    current: Path | None = path
    while current is not None and current.exists():
        m = read_manifest(current) or {}
        chain.append({"artifact": current.name, "kind": m.get("kind"), "precision": m.get("precision"),
                      "sha256": m.get("sha256") or sha256_file(current)})
        parent = (m.get("parent") or {}).get("artifact")
        if parent is None and m.get("checkpoint"):
            chain.append({"artifact": Path(m["checkpoint"]["path"]).name, "kind": "checkpoint",
                          "sha256": m["checkpoint"]["sha256"]})
        current = Path(parent) if parent else None
        if current is not None and not current.is_absolute() and not current.exists():
            current = path.parent / current.name
    return chain


def build_report(config: DeployConfig, artifacts: dict[str, Path], engines: dict[str, Path], vdoc: dict[str, Any],
                 bdoc: dict[str, Any], notes: list[str], skipped: list[str], judged_on: str,
                 warnings: list[str]) -> dict[str, Any]:
    """``judged_on``: the images that judged the verdicts, in words; ``warnings``: the steps' own."""
    from vitdeploy import __version__

    measured = engines or artifacts
    acc = {c["artifact"]: c for c in vdoc["candidates"]}
    rows = []
    for precision, path in measured.items():
        label = path.name
        lat = {str(r["batch"]): {"p50_ms": r["latency_ms"]["p50"], "p99_ms": r["latency_ms"]["p99"],
                                 "throughput_ips": r["throughput_ips"], "speedup": r.get("speedup")}
               for r in bdoc["results"] if r["artifact"] == label}
        a = acc.get(label)
        ref = vdoc["reference"]
        rows.append({
            "precision": precision, "artifact": label, "backend": "trt" if engines else "ort-cpu",
            "top1": (a or {}).get("top1", ref.get("top1") if precision == "fp32" else None),
            "top1_drop_points": (a or {}).get("top1_drop_points",
                                              0.0 if precision == "fp32" and ref.get("top1") is not None else None),
            "cosine": a["comparison"]["cosine_mean"] if a else 1.0,
            "top1_agreement": a["comparison"]["top1_agreement"] if a else 1.0,
            "validation": "reference" if a is None else ("pass" if a["passed"] else "FAIL: " + "; ".join(a["failures"])),
            "latency": lat,
            "manifest_chain": manifest_chain(path),
        })
    return {
        "schema": REPORT_SCHEMA, "vitdeploy": __version__, "model": config.model,
        "checkpoint": str(config.checkpoint) if config.checkpoint else None,
        "calibration": str(config.calib) if config.calib else "built-in synthetic sample",
        "validation_data": {**vdoc["data"], "judged_on": judged_on}, "precisions": rows, "batches": list(config.batches),
        "conditions": bdoc.get("conditions"), "warnings": warnings + bdoc.get("warnings", []), "notes": notes,
        "steps_skipped": skipped, "passed": vdoc.get("passed", True), "gated": gated(config),
        "files": {"validate": "validate.json", "bench": "bench.json", "markdown": "report.md"},
    }


def report_markdown(r: dict[str, Any]) -> str:
    """report.md: the notes, one table of every precision's figures, the conditions, the manifest chains."""
    lines = [f"# vitdeploy report: {r['model']}", ""]
    for n in r["notes"]:
        lines += [f"> **Note:** {n}", ""]
    d = r["validation_data"]
    from vitdeploy.bench.fleet_report import checkpoint_text

    lines += [f"Checkpoint: {checkpoint_text(r)}; calibration: {r['calibration']}; "
              f"verdicts judged on {d['judged_on']}" + (" (labelled)" if d["labels"] else " (no labels)"), ""]
    head = "| precision | artifact | backend | top-1 | drop (pt) | cosine | top-1 agree |"
    sep = "|---|---|---|---|---|---|---|"
    for b in r["batches"]:
        head += f" p50 ms @{b} | img/s @{b} | speedup @{b} |"
        sep += "---|---|---|"
    lines += [head + " validation |", sep + "---|"]

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    for row in r["precisions"]:
        line = (f"| {row['precision']} | {row['artifact']} | {row['backend']} | {fmt(row['top1'], '.2%')} | "
                f"{fmt(row['top1_drop_points'], '+.2f')} | {row['cosine']:.5f} | {row['top1_agreement']:.2%} |")
        for b in r["batches"]:
            lat = row["latency"].get(str(b), {})
            line += f" {fmt(lat.get('p50_ms'), '.2f')} | {fmt(lat.get('throughput_ips'), ',.0f')} | {fmt(lat.get('speedup'), '.2f')}x |"
        lines.append(line + f" {row['validation']} |")
    c = r.get("conditions") or {}
    cpu = c.get("cpu") or {}
    lines += ["", "## Conditions", "", f"- CPU: {cpu.get('model')} ({cpu.get('cores')} cores), threads: {c.get('threads')}"]
    for g in c.get("gpus") or []:
        lines.append(f"- GPU: {g.get('name')} (sm {g.get('compute_capability')})")
    if c.get("jetson"):
        j = c["jetson"]
        lines.append(f"- Jetson: L4T {j.get('l4t')} (JetPack {j.get('jetpack')}), power mode {j.get('power_mode')}, clocks locked: {j.get('clocks_locked')}")
    for w in r["warnings"]:
        lines.append(f"- warning: {w}")
    lines += ["", "## Manifest chains", ""]
    for row in r["precisions"]:
        chain = " <- ".join(f"{x['artifact']} ({(x.get('sha256') or '')[:12]})" for x in row["manifest_chain"])
        lines.append(f"- {row['precision']}: {chain}")
    if r["steps_skipped"]:
        lines += ["", f"Resumed: {', '.join(r['steps_skipped'])} unchanged and not redone."]
    lines += ["", "![latency and accuracy](report.png)", ""]
    return "\n".join(lines)
