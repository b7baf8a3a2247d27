"""Write ``metadata_props`` into an ONNX model and run the full checker: shared by export and quantization.

Imports onnx only (never torch), so quantization can use it on a light install.
"""

from __future__ import annotations

from collections.abc import Mapping

from resnet_edge.errors import ResnetEdgeError


def with_props_checked(proto, props: Mapping[str, str], error: type[ResnetEdgeError], what: str) -> bytes:
    """``proto`` with ``props`` appended to its metadata, serialized after ``onnx.checker`` (full check).

    Raises ``error`` naming ``what`` failed the checker.
    """
    import onnx

    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise error(f"{what} fails the ONNX checker: {str(exc).splitlines()[0]}") from None
    return proto.SerializeToString()
