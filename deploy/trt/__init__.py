"""TensorRT knowledge, in one place, for every stage that needs it (no stage code here).

Nothing here imports ``tensorrt`` at module import: the TensorRT module is passed as a parameter
to the code that needs it, so the version branching is tested on the CPU with fakes. The two
places that call TensorRT's API, the build stage (vitdeploy.engine) and the runner
(vitdeploy.runners.trt_runner), build on these modules.

    version            TrtVersion: the feature predicates every version-dependent branch uses
    support            the ONNX parser's operator support per TensorRT version (tables + sources)
    restrictions       per-node parser restrictions (attributes, constant inputs) per version
    check              an ONNX graph against those tables (`vitdeploy check`, export's check)
    rewrite            graph rewrites a parser version needs (LayerNorm decomposed for 8.5)
    layers             per-layer precision from the engine inspector's JSON
    compat             engine manifest vs the running TensorRT / GPU (before deserialising)
    cuda               the CUDA runtime calls (ctypes over libcudart) the runner and the builder make
    calibration_cache  the TensorRT calibration-cache text format
    calibrator         the legacy implicit-INT8 calibrator (TensorRT < 10.12) fed from a cache
"""
