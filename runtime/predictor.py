"""Classify CIFAR-10 images with an exported ONNX model: numpy + onnxruntime, no torch.

    predictor = Predictor("model.onnx")
    result = predictor.predict(image)          # uint8 (32, 32, 3)
    result.class_names[0], result.top_k_probabilities[0]

Everything the predictor needs (normalization, class names, image size) comes
from the model's resnet-edge metadata, so a model and its preprocessing travel
as one file. One Predictor may serve calls from many threads: onnxruntime's
``InferenceSession.run`` is thread-safe and the predictor holds no other state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from resnet_edge.errors import MetadataError
from resnet_edge.metadata import INPUT_NAME, OUTPUT_NAME, ModelMetadata
from resnet_edge.runtime.preprocess import normalize

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


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


class Predictor:
    """An onnxruntime session plus the preprocessing its model's metadata prescribes.

    Args:
        model_path: an ONNX file written by ``resnet-edge export``.
        threads: onnxruntime intra-op threads; None lets onnxruntime use every core.
        chunk_size: images per ``session.run``; bigger batches are split so memory stays bounded.
    """

    def __init__(self, model_path: str | Path, threads: int | None = None, chunk_size: int = DEFAULT_CHUNK) -> None:
        self.model_path = Path(model_path)
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1 (or None for all cores), got {threads}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        if not self.model_path.is_file():
            raise FileNotFoundError(f"model not found: {self.model_path}")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.model_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
            raise MetadataError(f"cannot load {self.model_path} as an ONNX model: {str(exc).splitlines()[0]}") from None
        self.metadata = ModelMetadata.from_props(self.session.get_modelmeta().custom_metadata_map, str(self.model_path))
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [INPUT_NAME] or OUTPUT_NAME not in outputs:
            raise MetadataError(
                f"{self.model_path} has inputs {inputs} and outputs {outputs}; "
                f"expected input '{INPUT_NAME}' and output '{OUTPUT_NAME}'"
            )
        self.chunk_size = chunk_size
        self.threads = threads

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.metadata.class_names

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """Validate ``images`` and return the float32 ``(N, 3, S, S)`` batch the model takes.

        Accepted: a uint8 ``(S, S, 3)`` image, a uint8 ``(N, S, S, 3)`` batch, or a
        float32 ``(N, 3, S, S)`` batch that is already normalized (S = the model's
        image size, 32 for CIFAR-10).
        """
        size = self.metadata.image_size
        forms = (
            f"a uint8 ({size}, {size}, 3) image, a uint8 (N, {size}, {size}, 3) batch, "
            f"or a normalized float32 (N, 3, {size}, {size}) batch"
        )
        if not isinstance(images, np.ndarray):
            raise ValueError(f"expected a numpy array ({forms}), got {type(images).__name__}")
        if images.dtype == np.uint8:
            single = images.ndim == 3 and images.shape == (size, size, 3)
            if not single and (images.ndim != 4 or images.shape[1:] != (size, size, 3)):
                raise ValueError(f"got a uint8 array of shape {images.shape}; expected {forms}")
            if single:
                images = images[None]
            if images.shape[0] == 0:
                raise ValueError("got an empty batch (0 images)")
            return normalize(images, self.metadata.mean, self.metadata.std)
        if images.dtype == np.float32:
            if images.ndim != 4 or images.shape[1:] != (3, size, size):
                raise ValueError(f"got a float32 array of shape {images.shape}; expected {forms}")
            if images.shape[0] == 0:
                raise ValueError("got an empty batch (0 images)")
            if not np.isfinite(images).all():
                raise ValueError("got a float32 batch that contains NaN or infinity")
            return np.ascontiguousarray(images)
        raise ValueError(f"got a {images.dtype} array of shape {images.shape}; expected {forms}")

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Raw float32 logits ``(N, classes)`` for any accepted input form."""
        batch = self.preprocess(images)
        outputs = [
            self.session.run([OUTPUT_NAME], {INPUT_NAME: batch[start : start + self.chunk_size]})[0]
            for start in range(0, len(batch), self.chunk_size)
        ]
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    def predict(self, images: np.ndarray, top_k: int = 1) -> Predictions:
        """Class ids, names and probabilities (top-k) for any accepted input form."""
        num_classes = len(self.class_names)
        if not 1 <= top_k <= num_classes:
            raise ValueError(f"top_k must be between 1 and {num_classes}, got {top_k}")
        probabilities = softmax(self.logits(images))
        top_ids = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
        return Predictions(
            probabilities=probabilities,
            top_k_ids=top_ids,
            top_k_probabilities=np.take_along_axis(probabilities, top_ids, axis=1),
            top_k_names=[[self.class_names[i] for i in row] for row in top_ids],
        )

