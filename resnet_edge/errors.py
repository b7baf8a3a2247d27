"""The exception a user can act on.

Every stage raises a subclass of :class:`ResnetEdgeError` for bad input (a missing
file, a corrupt data set, a failed parity check). Its message is one line that
names the problem and what was expected; the CLI prints it without a traceback.
"""


class ResnetEdgeError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class DataError(ResnetEdgeError):
    """The data set is missing, incomplete or corrupt."""


class CheckpointError(ResnetEdgeError):
    """A checkpoint file is missing, unreadable or not a resnet-edge checkpoint."""


class ExportError(ResnetEdgeError):
    """The ONNX export failed or produced a model that does not match PyTorch."""


class MetadataError(ResnetEdgeError, ValueError):
    """An ONNX model lacks the resnet-edge metadata the runtime needs."""


class MissingExtraError(ResnetEdgeError):
    """An optional dependency (an extra such as ``[train]``) is not installed."""
