"""Latency, serving and accuracy benchmarks of the ADNet deployment (`make bench`, `python -m benchmarks`).

Modules, each usable on its own:
- config:   what to run (sizes, runs, concurrency) for QUICK / full mode on a CPU or GPU machine;
- machine:  the machine, versions and git commit a result belongs to;
- inputs:   contract-shaped inputs (synthetic scenes; NTIRE folders for DATA=); stats: median/p90/p99;
- compute:  MACs of ADNet (hook-based count) and the device's measured matmul rate: the FLOP floor;
- backends: PyTorch eager, ONNX Runtime (CPU/CUDA EP, CPU twin), TensorRT engines, Triton: one interface;
- latency:  warm-up, rotating inputs, median/p90/p99 (CUDA events on GPU);
- serving:  Triton load at fixed concurrency with perf_analyzer and an asyncio tritonclient load generator;
- accuracy: NTIRE PSNR-l / PSNR-mu of every backend against PyTorch FP32 (and ground truth with DATA=);
- report:   CSV + JSON in benchmarks/results/, PNG plots, the printed tables;
- harness:  runs the parts in order and records what was skipped and why.

benchmarks/kernels/bench_dcn.py (the DCN kernel microbenchmark, `make bench-kernels`) is separate.
"""
