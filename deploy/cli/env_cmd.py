"""`vitdeploy env`: what is installed and what hardware is here."""

from __future__ import annotations

from vitdeploy.cli import tables
from vitdeploy.cli.console import console, print_json
from vitdeploy.cli.options import Json

EPILOG = "Example: vitdeploy env --json > env.json"


def env(as_json: Json = False) -> None:
    """Show Python, torch, ONNX, ONNX Runtime (and its providers), TensorRT, CUDA, GPUs and the Jetson release.

    Missing pieces are listed as missing; this command never fails because something is absent.
    """
    from vitdeploy.core.sysinfo import environment

    info = environment()
    if as_json:
        print_json(info)
        return
    table = tables.table("vitdeploy environment")
    table.add_column("component", no_wrap=True)
    table.add_column("status", overflow="fold")
    table.add_row("vitdeploy", info["vitdeploy"])
    table.add_row("python", f"{info['python']} ({info['platform']})")
    cpu = info["cpu"]
    table.add_row("cpu", f"{cpu['model']}, {cpu['cores']} cores")
    for name, pkg in info["packages"].items():
        if pkg.get("error"):
            status = f"[red]broken[/]: {pkg['error']}"
        elif pkg["installed"]:
            status = f"[green]{pkg['version'] or 'installed'}[/]"
            if "providers" in pkg:
                status += f"  providers: {', '.join(pkg['providers'])}"
            if pkg.get("cuda_available") is not None:
                status += f"  cuda: {'yes ' + str(pkg.get('cuda_version')) if pkg['cuda_available'] else 'no'}"
        else:
            status = "[yellow]not installed[/]"
        table.add_row(name, status)
    if info["gpus"]:
        for i, gpu in enumerate(info["gpus"]):
            table.add_row(f"gpu {i}", f"{gpu['name']} (sm {gpu['compute_capability']}, {gpu['memory_mib']:.0f} MiB, driver {gpu['driver']})")
    else:
        table.add_row("gpu", "[yellow]none found[/] (nvidia-smi absent or no device)")
    jetson = info["jetson"]
    if jetson:
        table.add_row("jetson", f"{jetson.get('module', '?')}: L4T {jetson['l4t']} (JetPack {jetson['jetpack'] or '?'}), "
                      f"power {jetson['power_mode'] or '?'}, clocks locked: {jetson['clocks_locked']}")
    else:
        table.add_row("jetson", "not a Jetson (no /etc/nv_tegra_release)")
    console.print(table)
