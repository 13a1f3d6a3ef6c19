"""Shared test set-up: the --update-golden flag and external tools as oracles.

External oracles (tshark, editcap, ...) are installed by .ci/run.  A test
that needs one skips on a developer machine without it, but FAILS under CI
(CI=true), so a missing install step cannot hide behind a green run.
"""
import os
import shutil

import pytest


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite the golden outputs under fixtures/golden/ instead of comparing")


@pytest.fixture
def update_golden(request):
    return request.config.getoption("--update-golden")


def need_tool(name):
    """The path of an external tool; skip without it, except under CI where it must exist."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed: .ci/run must install it")
        pytest.skip(f"{name} is not installed")
    return path
