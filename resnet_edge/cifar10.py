"""Facts about CIFAR-10 that every stage reads: class names, image size, normalization.

The mean and std are the per-channel statistics of the 50,000 training images on
the [0, 1] scale (pixels / 255). Training, export metadata, the runtime and the
calibration reader all take them from here, so preprocessing cannot drift
between stages.
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
