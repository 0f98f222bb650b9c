"""TensorRT: build engines from vitdeploy ONNX files and run them (``vitdeploy build-engine``).

Nothing here imports ``tensorrt`` (or cuda-python) at module import: option validation,
manifest reading and Q/DQ detection run on any machine, and the TensorRT module is passed as a
parameter to the code that needs it, so the version branching is tested on the CPU with fakes.

    version     TrtVersion: the feature predicates every version-dependent branch uses
    config      EngineConfig (frozen options) + the TensorRT-free validation and build plan
    build       the builder (network flags, profile, precision, compatibility, inspection)
    layers      per-layer precision from the engine inspector's JSON
    compat      engine manifest vs the running TensorRT / GPU (before deserialising)
    cuda        the cuda-python calls the runner and the builder make
    calibrator  the legacy implicit-INT8 calibrator (TensorRT < 10.12) fed from a cache
    runner      TensorRTRunner, the runner protocol over execute_async_v3
    deploy_support  the engine step of `vitdeploy deploy`
"""
