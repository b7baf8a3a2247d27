"""resnet-edge: a ResNet-18 for CIFAR-10 from training run to CPU edge device.

Stages: ``resnet_edge.train`` (PyTorch checkpoint) → ``resnet_edge.export``
(ONNX with metadata and a parity check) → ``resnet_edge.runtime`` (numpy +
onnxruntime predictor). Importing this package imports neither torch nor onnx;
the training stages need the ``[train]`` extra.
"""

__version__ = "0.1.0"
