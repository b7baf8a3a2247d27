"""Latency statistics, bench rows, the alternating-pass loop, the worker and ``resnet-edge bench`` end to end."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from resnet_edge.bench.engines import engine_label
from resnet_edge.bench.passes import best_of_passes, interleaved_timings
from resnet_edge.bench.rows import BenchConfig, BenchResult, BenchRow, with_ratios
from resnet_edge.bench.worker import run_in_subprocess
from resnet_edge.cli import main
from resnet_edge.errors import ResnetEdgeError
from resnet_edge.runtime import LatencyStats, Predictor, measure_latency

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def predictor(onnx_model):
    return Predictor(onnx_model)


def hand_built_row(model: str, p50_ms: float, images_per_second: float, *, batch_size: int = 1, streams: int = 1,
                   provider: str | None = None, iters: int = 10) -> BenchRow:
    """A row as a worker would report it, with the numbers a test needs and plausible others."""
    stats = LatencyStats(batch_size=batch_size, threads=1, iters=iters, p50_ms=p50_ms, p90_ms=p50_ms * 1.1,
                         p99_ms=p50_ms * 1.2, mean_ms=p50_ms, min_ms=p50_ms * 0.9, images_per_second=images_per_second)
    config = BenchConfig(model, "onnxruntime", batch_size, threads=1, streams=streams, provider=provider)
    return BenchRow(config, BenchResult(stats, "fp32", peak_rss_mb=100.0, size_bytes=1000))


# --- Statistics and the timing loop -------------------------------------------------------------------------------


def test_latency_statistics_of_known_timings():
    # Ten calls of 1..9 ms and one slow one of 100 ms, out of order; numpy's default (linear) percentiles of the
    # sorted values 1..9, 100 at positions 0.5, 0.9 and 0.99 of 9: 5.5; 9 + 0.1 * 91; 9 + 0.91 * 91.
    seconds = [0.007, 0.100, 0.003, 0.001, 0.009, 0.005, 0.002, 0.008, 0.006, 0.004]
    stats = LatencyStats.from_seconds(seconds, batch_size=4, threads=2)
    assert (stats.batch_size, stats.threads, stats.iters) == (4, 2, 10)
    assert stats.p50_ms == pytest.approx(5.5)
    assert stats.p90_ms == pytest.approx(18.1)
    assert stats.p99_ms == pytest.approx(91.81)
    assert stats.mean_ms == pytest.approx(14.5)
    assert stats.min_ms == pytest.approx(1.0)
    assert stats.images_per_second == pytest.approx(40 / 0.145)  # all images over all time, the slow call included
    assert LatencyStats.from_dict({**stats.to_dict(), "precision": "fp32"}) == stats
    with pytest.raises(ValueError, match="non-empty"):
        LatencyStats.from_seconds([], batch_size=1)


def test_latency_measurement(predictor):
    stats = measure_latency(predictor, batch_size=4, warmup=2, iters=10)
    assert stats.batch_size == 4 and stats.iters == 10 and stats.threads == predictor.threads
    assert 0 < stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms
    assert stats.images_per_second > 0
    with pytest.raises(ValueError, match="need batch_size >= 1"):
        measure_latency(predictor, batch_size=0)


@pytest.mark.parametrize("options", [{"iters": 0}, {"warmup": -1}, {"duration": 0}, {"duration": -1.0}])
def test_bad_latency_arguments(predictor, options):
    with pytest.raises(ValueError, match="need batch_size >= 1, iters >= 1, warmup >= 0 and duration > 0"):
        measure_latency(predictor, **options)


def test_latency_for_a_duration(predictor):
    stats = measure_latency(predictor, warmup=0, duration=0.05)
    assert stats.iters >= 1 and stats.batch_size == 1 and stats.images_per_second > 0


def test_interleaved_timings_alternate_the_order_of_each_round():
    calls = []
    timings = interleaved_timings([lambda: calls.append("a"), lambda: calls.append("b")], iters=5, warmup=1,
                                  round_size=2)
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] + ["b", "b", "a", "a"] + ["a", "b"]
    assert timings.shape == (2, 5) and (timings >= 0).all()


# --- Rows, ratios and passes --------------------------------------------------------------------------------------


def test_rows_round_trip_through_json_with_the_keys_bench_has_always_printed():
    config = BenchConfig("m.onnx", "onnxruntime", 8, threads=None, streams=2, warmup=3, iters=7, duration=None,
                         provider="CPUExecutionProvider", predictor_options={"optimization": "basic"})
    assert BenchConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    stats = LatencyStats(batch_size=8, threads=None, iters=7, p50_ms=2.0, p90_ms=2.5, p99_ms=3.0, mean_ms=2.1,
                         min_ms=1.9, images_per_second=3800.0)
    row = with_ratios([BenchRow(config, BenchResult(stats, "int8", peak_rss_mb=120.5, size_bytes=11_000_000))])[0]
    assert BenchRow.from_dict(json.loads(json.dumps(row.to_dict()))) == row
    plain = hand_built_row("m.onnx", 2.0, 500.0, provider="CPUExecutionProvider")
    assert list(with_ratios([plain])[0].to_dict()) == [
        "model", "engine", "batch_size", "threads", "streams", "warmup", "iters", "duration", "provider",
        "size_bytes", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "images_per_second", "precision",
        "peak_rss_mb", "p50_ratio", "throughput_ratio",
    ]
    no_provider = BenchConfig("m.pt", "torch").to_dict()
    assert "provider" not in no_provider and "predictor_options" not in no_provider


def test_ratios_compare_each_row_with_the_first_models_row_of_its_setting():
    rows = [
        hand_built_row("a.onnx", 2.0, 500.0, batch_size=1),
        hand_built_row("a.onnx", 4.0, 1000.0, batch_size=4),
        hand_built_row("a.onnx", 3.0, 300.0, batch_size=1, streams=2),  # same batch, another setting
        hand_built_row("b.onnx", 1.0, 1000.0, batch_size=1),
        hand_built_row("b.onnx", 6.0, 666.0, batch_size=4),
        hand_built_row("b.onnx", 1.5, 900.0, batch_size=1, streams=2),
        # The first model on another execution provider is another engine: compared with a.onnx on CPU, not itself.
        hand_built_row("a.onnx", 1.0, 2000.0, batch_size=1, provider="OpenVINOExecutionProvider"),
    ]
    compared = with_ratios(rows)
    assert [r.p50_ratio for r in compared] == [1.0, 1.0, 1.0, 0.5, 1.5, 0.5, 0.5]
    assert [r.throughput_ratio for r in compared] == pytest.approx([1.0, 1.0, 1.0, 2.0, 0.666, 3.0, 4.0])
    assert [r.stats for r in compared] == [r.stats for r in rows]


def test_best_of_passes_alternates_the_order_and_keeps_each_rows_fastest_pass():
    # p50 of each row in passes 1, 2, 3; each hand-built row records its pass number in iters.
    p50s = {"a": [3.0, 1.0, 2.0], "b": [1.0, 2.0, 1.0], "c": [2.0, 2.0, 0.5]}
    calls: list[str] = []

    def measure(config: BenchConfig) -> BenchRow:
        calls.append(config.model)
        number = calls.count(config.model)
        return hand_built_row(config.model, p50s[config.model][number - 1], 100.0, iters=number)

    lines: list[str] = []
    configs = [BenchConfig(name, "onnxruntime") for name in ("a", "b", "c")]
    best = best_of_passes(configs, 3, names=["row a", "row b", "row c"], log=lines.append, measure=measure)
    assert calls == ["a", "b", "c", "c", "b", "a", "a", "b", "c"]
    assert [(row.config.model, row.stats.iters) for row in best] == [("a", 2), ("b", 1), ("c", 3)]  # b: a tie
    assert lines[:4] == ["  row a (pass 1/3) ...", "  row b (pass 1/3) ...", "  row c (pass 1/3) ...",
                         "  row c (pass 2/3) ..."]
    one: list[str] = []
    best_of_passes(configs[:1], log=one.append, measure=lambda config: hand_built_row(config.model, 1.0, 100.0))
    assert one == ["  a · onnxruntime · batch 1 · threads all · streams 1 ..."]
    with pytest.raises(ValueError, match="at least 1 pass"):
        best_of_passes(configs, 0, measure=measure)


def test_the_bench_plot_never_touches_pyplot_or_the_backend(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "bench.png"
    code = textwrap.dedent(f"""
        import sys
        import matplotlib
        matplotlib.use("svg")  # a program's own backend, which the bench must leave alone
        from resnet_edge.bench.plot import plot_rows
        from resnet_edge.bench.rows import BenchRow
        rows = [BenchRow.from_dict(row) for row in {[hand_built_row(m, 2.0, 50.0).to_dict() for m in ("a", "b")]!r}]
        plot_rows(rows, __import__("pathlib").Path({str(png)!r}))
        assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
        assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_failing_worker_is_one_line_naming_the_row(tmp_path):
    with pytest.raises(ResnetEdgeError, match=r"^benchmarking .*missing.onnx with onnxruntime failed: .*not found"):
        run_in_subprocess(BenchConfig(str(tmp_path / "missing.onnx"), "onnxruntime", iters=1, warmup=0))


# --- resnet-edge bench ----------------------------------------------------------------------------------------------


def test_bench_compares_models_and_engines_in_separate_processes(onnx_model, trained_run, tmp_path):
    save, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    result = CliRunner().invoke(main, [
        "bench", str(onnx_model), str(trained_run / "best.pt"), "--batch-size", "1,4", "--threads", "1",
        "--iters", "5", "--warmup", "1", "--save", str(save), "--plot", str(plot),
    ])
    assert result.exit_code == 0, result.output
    results = json.loads(save.read_text())["results"]
    assert [(r["engine"], r["batch_size"]) for r in results] == \
        [("onnxruntime", 1), ("onnxruntime", 4), ("torch", 1), ("torch", 4)]
    assert all(r["threads"] == 1 and r["peak_rss_mb"] > 0 for r in results)
    assert all(r["size_bytes"] == Path(r["model"]).stat().st_size for r in results)
    # Each row against the first model's (the ONNX file's) row of the same batch size.
    baseline = {r["batch_size"]: r for r in results if r["model"] == str(onnx_model)}
    for r in results:
        base = baseline[r["batch_size"]]
        assert r["p50_ratio"] == r["p50_ms"] / base["p50_ms"]
        assert r["throughput_ratio"] == r["images_per_second"] / base["images_per_second"]
    # torch's process holds torch; onnxruntime's does not, so each was measured alone.
    assert results[2]["peak_rss_mb"] > results[0]["peak_rss_mb"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "p50 vs first" in result.output and f"wrote {save}" in result.output


def test_bench_measures_streams_and_refuses_them_for_torch(onnx_model, trained_run):
    result = CliRunner().invoke(main, ["bench", str(onnx_model), "--batch-size", "8", "--threads", "1",
                                       "--streams", "1,2", "--iters", "3", "--warmup", "1", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["results"]
    assert [(r["streams"], r["batch_size"]) for r in rows] == [(1, 8), (2, 8)]
    assert [r["p50_ratio"] for r in rows] == [1.0, 1.0]  # each streams setting is its own baseline
    refused = CliRunner().invoke(main, ["bench", str(trained_run / "best.pt"), "--streams", "2"])
    assert refused.exit_code == 2 and "--streams 2: streams apply to the onnxruntime and openvino" in refused.output


def test_bench_measures_each_execution_provider_in_rows_of_its_own(onnx_model, trained_run):
    result = CliRunner().invoke(main, ["bench", str(onnx_model), str(trained_run / "best.pt"), "--providers",
                                       "CPU,cpuexecutionprovider", "--iters", "3", "--warmup", "1", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["results"]
    assert [(r["engine"], r.get("provider")) for r in rows] == \
        [("onnxruntime", "CPUExecutionProvider"), ("torch", None)]  # one provider by two names: measured once
    assert [engine_label(r["engine"], r.get("provider")) for r in rows] == ["onnxruntime", "torch"]
    assert engine_label("onnxruntime", "OpenVINOExecutionProvider") == "onnxruntime (OpenVINO EP)"
    refused = CliRunner().invoke(main, ["bench", str(onnx_model), "--providers", "CPU,NoSuch"])
    assert refused.exit_code == 2
    assert "NoSuch not available in this onnxruntime; available: " in refused.output
    refused = CliRunner().invoke(main, ["bench", str(trained_run / "best.pt"), "--providers", "CPU"])
    assert refused.exit_code == 2 and "--providers CPU: execution providers apply to the onnxruntime" in refused.output
