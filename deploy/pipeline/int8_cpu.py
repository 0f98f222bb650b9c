"""The INT8 step of `vitdeploy deploy` without engines: which INT8 form runs faster on this CPU.

Both Q/DQ forms (ONNX Runtime's uint8 one and TensorRT's) are timed here with placeholder ranges
(vitdeploy.calib.cpu_form), the faster one calibrated and written; the choice and its figures go
to OUT/int8-cpu-form.json and, in words, to the report's notes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitdeploy.core import manifest as manifests
from vitdeploy.core.io import manifest_path, write_json_atomic
from vitdeploy.core.precision import QuantHints
from vitdeploy.pipeline.state import digest

if TYPE_CHECKING:
    from vitdeploy.pipeline.run import DeployConfig

CPU_FORM_FILE = "int8-cpu-form.json"  # which INT8 form ran faster on this CPU, with the figures
TRT_INT8_HINT = "For TensorRT run `vitdeploy quantize MODEL.onnx --int8 --qdq-form trt` (or deploy with --qdq-form trt)"
ORT_CPU_NOTE = f"INT8 ONNX written for ONNX Runtime CPU (uint8 activations). {TRT_INT8_HINT}"

RunStep = Callable[[str, str, list[Path], Callable[[], None]], None]  # run_deploy's: name, inputs digest, outputs, work


def quantize_int8_cpu(config: DeployConfig, fp32: Path, calib: Path, run_step: RunStep, progress: Any,
                      seed: int) -> dict[str, Any]:
    """INT8 for ONNX Runtime on this CPU: both Q/DQ forms timed (placeholder ranges, batch 8, a few
    seconds), the faster one calibrated and written. The choice and its figures go to CPU_FORM_FILE,
    an output of the step, so a resumed run keeps the same artifact instead of re-timing."""
    from vitdeploy.calib.quantize import QuantizeConfig, quantize
    from vitdeploy.calib.quantize import default_output as quant_output

    choice_path = config.out / CPU_FORM_FILE
    outputs: list[Path] = [choice_path]  # the artifact is added once chosen; run_step records the list after

    def do() -> None:
        from vitdeploy.core import onnx_utils
        from vitdeploy.calib import cpu_form

        model = onnx_utils.load(fp32)
        m = manifests.read(fp32)
        hints = (m.quantization_hints if m else None) or QuantHints()
        choice = cpu_form.choose(cpu_form.placeholder_forms(model, hints), fp32=model.SerializeToString(),
                                 threads=config.threads)
        path = quant_output(fp32, "int8", choice.choice)
        # the trt form as timed: FP32 float parts (FP16 ones run slower on ONNX Runtime's CPU provider)
        quantize(QuantizeConfig(model=fp32, precision="int8", calib=calib, method=config.method, samples=config.samples,
                                holdout=config.holdout, seed=seed, on_error=config.on_error,
                                target=choice.choice, output=path, force=True,
                                high_precision="fp32" if choice.choice == "trt" else "fp16",
                                threads=config.threads, gate=False,
                                **config.budget, **({"device_profile": "ort-cpu"} if config.budget else {})),
                 progress=progress)
        outputs.extend([path, manifest_path(path)])
        write_json_atomic(choice_path, {"artifact": path.name, "target": choice.choice, **choice.to_dict()})

    run_step("quantize int8", digest(fp32, manifest_path(fp32), calib, "int8", "auto-cpu", config.method, *config.budget.values(),
                                     config.samples, config.holdout, config.on_error, config.threads, "q/3"), outputs, do)
    return json.loads(choice_path.read_text())


def cpu_form_note(form: dict[str, Any]) -> str:
    """The report's note on the INT8 form chosen here, with the timings that chose it."""
    t = form["timings"]
    figures = ", ".join(f"{k} {v['p50_ms']:.1f} ms" for k, v in t.items())
    if form.get("fp32_p50_ms"):
        figures += f", FP32 {form['fp32_p50_ms']:.1f} ms"
    what = ("ONNX Runtime CPU form (uint8 activations)" if form["target"] == "ort-cpu"
            else "TensorRT Q/DQ form with FP32 float parts")
    return (f"INT8 written in the {what}, the faster here: timed at batch {form['batch']}, "
            f"{form['threads'] or 'default'} thread(s), p50 {figures}; {form['reason']}. {TRT_INT8_HINT}")
