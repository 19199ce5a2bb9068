"""TensorRT-RTX fixtures of the engine tests: the RTX module, the Python stand-in plugin, one FP16 engine built at the
CI profile (real builds on the CPU; see tests/export/test_build_engine.py).

Run through `make test`: TensorRT-RTX's ONNX parser needs LD_LIBRARY_PATH to hold the libtensorrt_rtx.so link that
`make setup` creates (without it the `rtx` fixture fails with that message instead of the process aborting)."""
import pytest


@pytest.fixture(scope="session")
def rtx():
    from export import trt_compat

    try:
        return trt_compat.load("rtx")
    except trt_compat.TensorRTNotFound as exc:  # e.g. pytest started without make's LD_LIBRARY_PATH
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def stand_in(rtx):
    from export import trt_python_plugin

    return trt_python_plugin.register(rtx.module)


@pytest.fixture(scope="session")
def ci_engine(rtx, stand_in, graphs, tmp_path_factory):
    """The FP16 pipeline graph built at the CI profile: (BuildResult, stand-in creations during this build, calls)."""
    from export import build_engine as be
    from export.profiles import CI_PROFILE

    before = len(stand_in.created)
    calls_before = dict(stand_in.trace)
    out = tmp_path_factory.mktemp("engine") / "model.plan"
    result = be.build_engine(graphs.path("plugin_fp16"), out, be.BuildOptions(profiles=(CI_PROFILE,),
                                                                                 show_progress=False), trt=rtx)
    calls = {k: v - calls_before.get(k, 0) for k, v in stand_in.trace.items()}
    return result, stand_in.created[before:], calls
