"""Facts about CIFAR-10: class names, image size, and the training images' normalization.

The mean and std are the per-channel statistics of the 50,000 training images on
the [0, 1] scale (pixels / 255). Training normalizes with them and records them,
with the class names, in every checkpoint; export copies them into the ONNX
metadata. Every later stage reads a model's own values from there (they are only
the defaults for files that predate the record), so a model trained with other
statistics is preprocessed as it was trained.
"""

CLASS_NAMES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SIZE = 32
CHANNELS = 3

MEAN: tuple[float, float, float] = (0.491400, 0.482158, 0.446531)
STD: tuple[float, float, float] = (0.247032, 0.243485, 0.261588)
