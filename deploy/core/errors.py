"""The project's error types. Each carries the exit code the CLI returns for it.

Core code raises these; only the CLI turns them into a one-line message and an exit code.

Exit codes (also in the README):
    0  success
    1  unexpected internal error (a bug: rerun with --debug and report it)
    2  bad usage: invalid option value or combination
    3  input not found or unreadable (file, model name, data)
    4  checkpoint does not match the model
    5  output exists (use --force) or cannot be written
    6  parity check failed (shape or value mismatch)
    7  missing optional dependency (the message says what to install)
    8  export or conversion failed
    9  TensorRT engine build failed
    10 compatibility check failed (TensorRT readiness, engine/GPU mismatch)
    11 remote device unreachable, or the connection dropped mid-run
    130 interrupted
"""

from __future__ import annotations


class VitdeployError(Exception):
    """Base class: a failure the user can act on, reported as one line."""

    exit_code = 1


class UsageError(VitdeployError):
    exit_code = 2


class InputError(VitdeployError):
    """An input (file, model name, data set) is missing, unreadable or malformed."""

    exit_code = 3


class UnknownModelError(InputError):
    pass


class CheckpointError(VitdeployError):
    """A checkpoint cannot be read, or its tensors do not fit the model."""

    exit_code = 4


class OutputExistsError(VitdeployError):
    exit_code = 5


class OutputError(VitdeployError):
    exit_code = 5


class ParityError(VitdeployError):
    """Two backends disagree. Subclasses say whether shapes or values differ."""

    exit_code = 6


class ShapeMismatchError(ParityError):
    pass


class ValueMismatchError(ParityError):
    def __init__(self, message: str, figures: dict | None = None):
        super().__init__(message)
        self.figures = figures or {}


class MissingDependencyError(VitdeployError):
    exit_code = 7


class ExportError(VitdeployError):
    exit_code = 8


class EngineBuildError(VitdeployError):
    exit_code = 9


class CompatibilityError(VitdeployError):
    exit_code = 10


class RemoteError(VitdeployError):
    """The device cannot be reached over SSH, or the connection dropped mid-run."""

    exit_code = 11


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "unexpected internal error (rerun with --debug and report it)",
    2: "bad usage: invalid option value or combination",
    3: "input not found or unreadable (file, model name, data)",
    4: "checkpoint does not match the model",
    5: "output exists (use --force) or cannot be written",
    6: "parity check failed (shape or value mismatch)",
    7: "missing optional dependency (the message says what to install)",
    8: "export or conversion failed",
    9: "TensorRT engine build failed",
    10: "compatibility check failed (TensorRT readiness, engine/GPU mismatch)",
    11: "remote device unreachable, or the connection dropped mid-run",
    130: "interrupted",
}
