"""``resnet-edge bench`` and the ``benchmarks/`` scripts: one package for everything a bench row goes through.

- ``rows``: what a row measures (``BenchConfig``), what its worker measured (``BenchResult``) and the row the
  bench reports (``BenchRow``: both, plus ratios against a baseline); the one shape every producer and consumer
  shares, with the JSON form the worker protocol and ``--json`` / ``--save`` use.
- ``engines``: onnxruntime, torch and OpenVINO, each behind one call from uint8 images to probabilities.
- ``worker``: one row in a fresh Python process (``python -m resnet_edge.bench.worker``).
- ``passes``: alternating order against machine drift: rows over several passes, keeping each one's best
  (``best_of_passes``), and calls in alternating rounds within one process (``interleaved_timings``).
- ``plot``: the p50 and throughput chart of ``--plot``.

The command (``resnet_edge.cli.bench``) and the scripts in ``benchmarks/`` only plan rows and print them (with
``resnet_edge.cli.table.format_table``, the one table printer). The timing loop and its statistics
(``time_calls``, ``LatencyStats``) stay in ``resnet_edge.runtime.bench``: the runtime's public
``measure_latency`` needs them, and the runtime must not depend on this package. Importing this package
imports nothing; its modules import numpy and onnxruntime, and torch or OpenVINO only inside a worker that
benchmarks them.
"""
