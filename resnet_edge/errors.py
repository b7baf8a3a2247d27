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


def name_list(names: list[str], shown: int = 3) -> str:
    """``a, b, c and 4 more``: names for a one-line error, however many there are."""
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def key_mismatch(missing: list[str], unexpected: list[str]) -> str:
    """``missing a, b; unexpected c``: how one set of tensor names differs from the expected one."""
    parts = [f"missing {name_list(missing)}"] if missing else []
    return "; ".join(parts + ([f"unexpected {name_list(unexpected)}"] if unexpected else []))


def first_line(exc: BaseException) -> str:
    """An exception's first line (onnxruntime's and torch's run on for pages; some have no message at all)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
