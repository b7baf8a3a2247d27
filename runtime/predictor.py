"""Classify CIFAR-10 images with an exported ONNX model: numpy + onnxruntime, no torch.

    predictor = Predictor("model.onnx")
    result = predictor.predict(image)          # uint8 (32, 32, 3), PIL image, path, list, batch
    result.class_names[0], result.top_k_probabilities[0]

Everything the predictor needs (input layout, normalization, class names, image
size, fp32 or int8) comes from the model's resnet-edge metadata, so a model and
its preprocessing travel as one file; a model exported with ``--raw-input``
normalizes inside the graph and gets raw uint8 pixels. One Predictor may serve
calls from many threads: onnxruntime's ``InferenceSession.run`` is thread-safe
and the predictor's only other state, the thread pool of ``streams``, is too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resnet_edge.errors import MetadataError
from resnet_edge.metadata import INPUT_NAME, OUTPUT_NAME
from resnet_edge.runtime.inputs import to_model_batch
from resnet_edge.normalization import normalize
from resnet_edge.runtime.session import create_session, resolve_providers, session_metadata, usable_cores

DEFAULT_CHUNK = 256


@dataclass(frozen=True)
class Predictions:
    """Results for a batch of N images, in input order.

    ``probabilities`` is the full softmax ``(N, classes)``; the ``top_k_*`` fields
    hold the k most likely classes per image, most likely first.
    """

    probabilities: np.ndarray
    top_k_ids: np.ndarray
    top_k_probabilities: np.ndarray
    top_k_names: list[list[str]]

    @property
    def class_ids(self) -> np.ndarray:
        """The top-1 class id per image, ``(N,)``."""
        return self.top_k_ids[:, 0]

    @property
    def class_names(self) -> list[str]:
        """The top-1 class name per image."""
        return [names[0] for names in self.top_k_names]

    def __len__(self) -> int:
        return len(self.top_k_ids)

    def to_records(self) -> list[dict]:
        """One JSON-ready dict per image: top-1 class and the top-k list."""
        return [
            {
                "class_id": int(ids[0]),
                "class_name": names[0],
                "probability": float(probs[0]),
                "top_k": [
                    {"class_id": int(i), "class_name": n, "probability": float(p)}
                    for i, n, p in zip(ids, names, probs)
                ],
            }
            for ids, names, probs in zip(self.top_k_ids, self.top_k_names, self.top_k_probabilities)
        ]


def _check_count(name: str, value: Any, alternative: str = "") -> None:
    """Refuse anything but an integer of at least 1 (bools are not counts)."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer of at least 1{alternative}, got {value!r}")


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = logits - logits.max(axis=1, keepdims=True)
    np.exp(exp, out=exp)
    exp /= exp.sum(axis=1, keepdims=True)
    return exp


class Predictor:
    """An onnxruntime session plus the preprocessing its model's metadata prescribes.

    Args:
        model_path: an ONNX file written by ``resnet-edge export`` or ``resnet-edge quantize``.
        threads: onnxruntime intra-op threads per stream; None: every core, or with several streams the
            cores divided among them.
        chunk_size: images per ``session.run``; bigger batches are split so memory stays bounded.
        streams: ``session.run`` calls one batch is spread over at the same time (OpenVINO's "CPU streams").
            With one stream per core (and so one thread each), every core runs whole images and no layer
            waits for the others to finish its slice: the throughput setting for big batches. Batch-1
            latency is best with one stream and all threads (the default). ``close()`` (or a ``with``
            block) ends the streams' threads.
        optimization: onnxruntime graph optimization level: disabled, basic, extended or all.
        providers: onnxruntime execution providers in order of preference, by onnxruntime's names or without
            their ``ExecutionProvider`` suffix (``"OpenVINO"``); CPU when None.
        cache_dir: a folder for the optimized graph, so the next start skips optimizing; with the OpenVINO
            provider, for OpenVINO's compiled model instead (see ``runtime.session``).
        session_config: onnxruntime session config entries, e.g. ``{"session.intra_op.allow_spinning": "0"}``.
    """

    def __init__(self, model_path: str | Path, threads: int | None = None, chunk_size: int = DEFAULT_CHUNK, *,
                 streams: int = 1,
                 optimization: str = "all", providers: Sequence[str] | None = None,
                 cache_dir: str | Path | None = None, session_config: Mapping[str, str] | None = None) -> None:
        self.model_path = Path(model_path)
        if threads is not None:
            _check_count("threads", threads, " (or None for all cores)")
        _check_count("chunk_size", chunk_size)
        _check_count("streams", streams)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"model not found: {self.model_path}")
        if threads is None and streams > 1:  # concurrent runs share the intra-op pool: don't oversubscribe
            threads = max(1, usable_cores() // streams)
        self.providers = resolve_providers(providers)
        self.session, self.from_cache = create_session(
            self.model_path, threads, optimization, self.providers,
            Path(cache_dir) if cache_dir is not None else None, session_config,
        )
        self.metadata = session_metadata(self.session, self.model_path)
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [INPUT_NAME] or OUTPUT_NAME not in outputs:
            raise MetadataError(
                f"{self.model_path} has inputs {inputs} and outputs {outputs}; "
                f"expected input '{INPUT_NAME}' and output '{OUTPUT_NAME}'"
            )
        self._check_graph_matches_metadata()
        self.chunk_size = chunk_size
        self.streams = streams
        # onnxruntime releases the GIL inside run(), so Python threads are enough to run streams in parallel;
        # the executor starts its threads on first use only.
        self._pool = ThreadPoolExecutor(streams, thread_name_prefix="resnet-edge-stream") if streams > 1 else None
        self.threads = threads
        self.optimization = optimization

    def _check_graph_matches_metadata(self) -> None:
        """Refuse metadata that contradicts the graph now, not with an onnxruntime error at the first call."""
        size, classes = self.metadata.image_size, len(self.metadata.class_names)
        expected_type, expected_dims, layout = self.metadata.input_spec
        graph_input = self.session.get_inputs()[0]
        dims = graph_input.shape[1:]
        output = next(o for o in self.session.get_outputs() if o.name == OUTPUT_NAME).shape[1:]
        # Symbolic dimensions (strings) are checked by onnxruntime at run time; only fixed ones can contradict.
        if (graph_input.type != expected_type or len(dims) != 3
                or any(isinstance(g, int) and g != e for g, e in zip(dims, expected_dims))):
            raise MetadataError(
                f"{self.model_path}: its metadata describes {layout} input of {size}x{size} images, "
                f"but the graph's input is {graph_input.type} of shape [N, {', '.join(map(str, dims))}]"
            )
        if len(output) != 1 or (isinstance(output[0], int) and output[0] != classes):
            raise MetadataError(
                f"{self.model_path}: its metadata names {classes} classes, but the graph's output has shape "
                f"[N, {', '.join(map(str, output))}]"
            )

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.metadata.class_names

    @property
    def precision(self) -> str:
        """``fp32`` or ``int8``, from the model's metadata."""
        return self.metadata.precision

    def preprocess(self, images: Any, resize: bool = False) -> np.ndarray:
        """Validate ``images`` and return the batch the model takes.

        Accepted: a uint8 ``(S, S, 3)`` image, a uint8 ``(N, S, S, 3)`` batch, a
        float32 ``(N, 3, S, S)`` batch that is already normalized, a PIL image, an
        image file path, or a list of images and paths (S = the model's image size,
        32 for CIFAR-10). The result is float32 NCHW, or uint8 NHWC for a model
        exported with ``--raw-input``.
        """
        batch = to_model_batch(images, self.metadata.image_size, resize)
        if batch.dtype == np.float32:
            if self.metadata.raw_input:
                raise ValueError(
                    f"{self.model_path.name} takes raw uint8 pixels (exported with --raw-input) and normalizes them "
                    "itself; pass uint8 images, not a normalized float32 batch"
                )
            return batch
        if self.metadata.raw_input:
            return np.ascontiguousarray(batch)
        return normalize(batch, self.metadata.mean, self.metadata.std)

    def logits(self, images: Any, resize: bool = False) -> np.ndarray:
        """Raw float32 logits ``(N, classes)`` for any accepted input form."""
        batch = self.preprocess(images, resize)
        if len(batch) <= self.chunk_size and self._pool is None:  # one run, the batch-1 latency path
            return self._run(batch)
        # Equal chunks of at most chunk_size, as many as a multiple of streams, so no stream idles at the end.
        rounds = -(-len(batch) // (self.streams * self.chunk_size))
        chunks = np.array_split(batch, min(len(batch), self.streams * rounds))
        if self._pool is None or len(chunks) == 1:
            outputs = [self._run(chunk) for chunk in chunks]
        else:
            outputs = list(self._pool.map(self._run, chunks))  # map keeps input order
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: chunk})[0]

    def close(self) -> None:
        """End the streams' threads; the predictor still works afterwards, one chunk at a time."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def predict(self, images: Any, top_k: int = 1, resize: bool = False) -> Predictions:
        """Class ids, names and probabilities (top-k) for any accepted input form, in input order."""
        num_classes = len(self.class_names)
        if not 1 <= top_k <= num_classes:
            raise ValueError(f"top_k must be between 1 and {num_classes}, got {top_k}")
        probabilities = softmax(self.logits(images, resize))
        if top_k == 1:  # argmax, like the stable sort, takes the first of tied classes, at a fraction of its cost
            top_ids = probabilities.argmax(axis=1)[:, None]
        else:
            top_ids = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
        return Predictions(
            probabilities=probabilities,
            top_k_ids=top_ids,
            top_k_probabilities=probabilities[np.arange(len(top_ids))[:, None], top_ids],
            top_k_names=[[self.class_names[i] for i in row] for row in top_ids.tolist()],
        )
