"""The inference engines the bench compares, each behind one call: uint8 NHWC images in, probabilities out.

Every engine pays the same preprocessing (``resnet_edge.normalization.normalize``, or
none for a ``--raw-input`` model) and the same softmax, so a ratio between two
engines is a ratio between their inference.

- ``onnxruntime``: the toolkit's ``Predictor`` on an ``.onnx`` file (fp32 or int8).
- ``torch``: PyTorch eager fp32 on a ``.pt`` checkpoint, in inference mode
  (``resnet_edge.torch_inference``, as ``evaluate`` runs it).
- ``openvino``: OpenVINO's CPU plugin on the same ``.onnx`` file (an int8 QDQ
  model runs as int8), compiled for the benchmarked batch size with the latency
  hint; needs the ``[openvino]`` extra.

With ``streams`` > 1 a batch is split over that many concurrent inferences:
the ``Predictor``'s ``streams`` for onnxruntime, and for OpenVINO its own CPU
streams (the throughput hint with an asynchronous request queue), so both
engines are measured in the same mode.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from resnet_edge.checkpoint import is_checkpoint_path
from resnet_edge.errors import ResnetEdgeError
from resnet_edge.extras import require
from resnet_edge.metadata import ONNX_SUFFIX, ModelMetadata
from resnet_edge.runtime.predictor import Predictor, softmax
from resnet_edge.normalization import normalize
from resnet_edge.runtime.session import DEFAULT_PROVIDERS, short_provider_name

ENGINES = ("onnxruntime", "torch", "openvino")
Classify = Callable[[np.ndarray], np.ndarray]


def engine_label(engine: str, provider: str | None = None) -> str:
    """``onnxruntime``, or ``onnxruntime (OpenVINO EP)`` on another execution provider than the CPU one."""
    if provider is None or provider in DEFAULT_PROVIDERS:
        return engine
    return f"{engine} ({short_provider_name(provider)} EP)"


def default_engine(model: Path) -> str:
    """The engine that runs ``model`` by its file type: torch for checkpoints, onnxruntime for ONNX."""
    return "torch" if is_checkpoint_path(model) else "onnxruntime"


def runs(engine: str, model: Path) -> bool:
    """Whether ``engine`` can run ``model``'s file type."""
    return (engine == "torch") != (model.suffix.lower() == ONNX_SUFFIX)


def check_engine(engine: str, model: Path) -> None:
    """Refuse an engine that cannot run ``model``'s file type, with what would."""
    if engine not in ENGINES:
        raise ResnetEdgeError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    if runs(engine, model):
        return
    if engine == "torch":
        raise ResnetEdgeError(f"engine torch runs .pt checkpoints, not {model.name}; give the checkpoint it came from")
    raise ResnetEdgeError(f"engine {engine} runs .onnx models, not {model.name}; export it first")


def load_engine(engine: str, model: Path, batch_size: int, threads: int | None,
                metadata: ModelMetadata | None = None,
                predictor_options: dict[str, Any] | None = None, streams: int = 1) -> tuple[Classify, str]:
    """A function from a uint8 ``(batch_size, 32, 32, 3)`` batch to probabilities, and the model's precision.

    OpenVINO needs the ONNX model's resnet-edge ``metadata`` (``runtime.session.read_metadata``), read by
    the caller so that the measured process holds OpenVINO alone. ``predictor_options`` go to the
    onnxruntime ``Predictor`` (``optimization``, ``session_config``, ...).
    """
    check_engine(engine, model)
    if engine == "onnxruntime":
        predictor = Predictor(model, threads=threads, streams=streams, **(predictor_options or {}))
        return (lambda images: predictor.predict(images).probabilities), predictor.precision
    if engine == "torch":
        if streams != 1:
            raise ResnetEdgeError("streams apply to the onnxruntime and openvino engines, not torch")
        return _torch(model, threads, batch_size), "fp32"
    if metadata is None:
        raise ResnetEdgeError(f"benchmarking {model.name} with openvino needs its resnet-edge metadata")
    return _openvino(model, metadata, batch_size, threads, streams), metadata.precision


def _torch(model_path: Path, threads: int | None, batch_size: int) -> Classify:
    require("torch", "train", "Benchmarking PyTorch")
    from resnet_edge.torch_inference import checkpoint_logits

    # threads None keeps torch's own default, as onnxruntime and OpenVINO keep theirs.
    _, logits_of = checkpoint_logits(model_path, threads, batch_size=batch_size)
    return lambda images: softmax(logits_of(images))


def _openvino(model_path: Path, metadata: ModelMetadata, batch_size: int, threads: int | None,
              streams: int) -> Classify:
    ov = require("openvino", "openvino", "Benchmarking with OpenVINO")
    core = ov.Core()
    model = core.read_model(str(model_path))
    size = metadata.image_size
    # A static batch, what a deployment compiles for; with streams, each request takes one share of it.
    share = -(-batch_size // streams)
    shape = [share, size, size, 3] if metadata.raw_input else [share, 3, size, size]
    model.reshape({model.input(0).get_any_name(): shape})
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
    if streams > 1:
        config = {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": streams}
    if threads is not None:
        # OpenVINO counts threads over all its streams; ``threads`` is per stream, as for the Predictor.
        config["INFERENCE_NUM_THREADS"] = threads * streams
    compiled = core.compile_model(model, "CPU", config)

    def prepare(images: np.ndarray) -> np.ndarray:
        return images if metadata.raw_input else normalize(images, metadata.mean, metadata.std)

    if streams == 1:
        request = compiled.create_infer_request()

        def classify(images: np.ndarray) -> np.ndarray:
            # share_inputs: OpenVINO reads the array in place, as onnxruntime does, instead of copying it (1 % at batch 1)
            request.infer({0: prepare(images)}, share_inputs=True)
            return softmax(np.asarray(request.get_output_tensor(0).data))

        return classify

    queue = ov.AsyncInferQueue(compiled, streams)

    def keep_share(request: Any, destination: np.ndarray) -> None:
        destination[:] = request.get_output_tensor(0).data[: len(destination)]

    queue.set_callback(keep_share)

    def classify_in_streams(images: np.ndarray) -> np.ndarray:
        batch = prepare(images)
        logits = np.full((len(batch), len(metadata.class_names)), np.nan, dtype=np.float32)
        parts = []  # shared with OpenVINO, so they must outlive the requests that read them
        for start in range(0, len(batch), share):
            part = batch[start : start + share]
            if len(part) < share:  # the compiled shape is static: pad the last share; its extra rows are dropped
                part = np.concatenate([part, np.zeros((share - len(part), *part.shape[1:]), part.dtype)])
            parts.append(part)
            queue.start_async({0: part}, logits[start : start + share], share_inputs=True)
        queue.wait_all()
        if np.isnan(logits).any():
            raise ResnetEdgeError("an OpenVINO stream returned no result for its share of the batch")
        return softmax(logits)

    return classify_in_streams
