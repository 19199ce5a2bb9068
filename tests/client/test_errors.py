"""One user-facing error base for every stage, and one way a CLI reports it."""
import importlib

import pytest

from client.errors import AdnetError, reports_errors

STAGE_ERRORS = [("export.errors", "PipelineError"), ("plugins.dcnv2.errors", "PluginError"),
                ("client.errors", "ClientError"), ("benchmarks.harness", "BenchError"),
                ("deploy.check", "CheckError"), ("deploy.balancer.haproxy", "BalancerError"),
                ("model_repository.server", "ServerError")]


@pytest.mark.parametrize("module, name", STAGE_ERRORS)
def test_every_stage_error_is_an_adnet_error(module, name):
    assert issubclass(getattr(importlib.import_module(module), name), AdnetError)


def test_a_user_error_becomes_one_line_and_exit_code_1(capsys):
    @reports_errors
    def main(argv=None):
        raise AdnetError("frames missing; pass --data DIR")

    assert main([]) == 1
    assert capsys.readouterr().err == "error: frames missing; pass --data DIR\n"


def test_a_bug_keeps_its_traceback_and_success_passes_through():
    @reports_errors
    def broken():
        raise KeyError("bug")

    with pytest.raises(KeyError):
        broken()
    assert reports_errors(lambda: 0)() == 0
