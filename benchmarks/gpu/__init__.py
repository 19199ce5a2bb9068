"""gpu-check: first contact with a GPU machine, in one command (`make gpu-check`, or `python -m benchmarks.gpu`).

For a bare box with CUDA, nvcc and a CUDA build of PyTorch, but no TensorRT and no internet; about 7 minutes on an
H100-class GPU. Each phase runs in its own process with its own time budget and pass/fail/skip, and the run goes on
after a failed phase (runner.py); without a GPU it builds what it can and skips the rest with the reason.

    env           GPU, driver, clocks, versions                                        (phases.py)
    build         the CUDA kernels (make kernels) and the CPU twin
    correctness   our kernel vs float64 and the CPU twin: poisoned outputs inside canaries, odd shapes, huge/NaN
                  offsets, +-inf mask logits, a side stream while the default one is busy  (dcn_checks.py)
    sanitizer     compute-sanitizer memcheck and racecheck on our kernel alone            (sanitizer_case.py)
    kernel_speed  ours vs im2col + cuBLAS and torchvision at ADNet's L1/L2/L3 shapes, FP16/FP32, against the
                  measured copy bandwidth and matmul rate                                  (dcn_speed.py)
    adnet         whole ADNet at 1060x1900 in PyTorch: FP32 (TF32 off/on), FP16, FP16 with our kernel in place
                  of the DCN op (torch_dcn.py), that under a CUDA graph: time, peak memory, error vs FP32

Results: benchmarks/results/<date>_<gpu>_gpucheck.json ({"phases": {name: {"status": ...}}}) and .csv, and a summary
table (results.py).
"""
