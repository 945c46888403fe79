"""The CLI's tcmalloc preload decision (no process is re-executed here)."""

from __future__ import annotations

import sys

import pytest

from mome.utils import tcmalloc

LIB = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD is Linux-only")


@linux_only
def test_plan_preloads_when_available():
    env = tcmalloc.preload_plan(["mome", "train"], {"PATH": "/bin"}, LIB)
    assert env["LD_PRELOAD"] == LIB and env["PATH"] == "/bin" and env[tcmalloc._GUARD] == "1"


@linux_only
def test_plan_keeps_an_existing_preload():
    env = tcmalloc.preload_plan(["mome"], {"LD_PRELOAD": "/x/libfoo.so"}, LIB)
    assert env["LD_PRELOAD"] == f"{LIB}:/x/libfoo.so"


@pytest.mark.parametrize("argv,env,lib", [
    (["mome", "--no-tcmalloc", "predict"], {}, LIB),
    (["mome"], {"MOME_TCMALLOC": "0"}, LIB),
    (["mome"], {"MOME_TCMALLOC": "off"}, LIB),
    (["mome"], {"LD_PRELOAD": "/usr/lib/libtcmalloc.so.4"}, LIB),
    (["mome"], {tcmalloc._GUARD: "1"}, LIB),
    (["mome"], {}, None),
])
def test_plan_does_nothing(argv, env, lib):
    assert tcmalloc.preload_plan(argv, env, lib) is None


@linux_only
@pytest.mark.parametrize("argv,env,preloaded", [
    (["mome", "predict", "-i", "a.nii"], {}, False),  # backend auto: OpenVINO, which aborts under tcmalloc
    (["mome", "bids", "in", "out", "participant"], {}, False),
    (["mome", "predict", "--backend", "openvino"], {}, False),
    (["mome", "predict", "--backend=auto"], {"MOME_BACKEND": "torch"}, False),
    (["mome", "predict", "--backend", "torch"], {}, True),
    (["mome", "predict"], {"MOME_BACKEND": "torch"}, True),
    (["mome", "train", "--preset", "quick"], {}, True),
])
def test_no_preload_for_commands_that_run_openvino(monkeypatch, argv, env, preloaded):
    monkeypatch.setattr(tcmalloc, "_openvino_installed", lambda: True)
    assert (tcmalloc.preload_plan(argv, env, LIB) is not None) is preloaded
    monkeypatch.setattr(tcmalloc, "_openvino_installed", lambda: False)  # eager PyTorch: preloaded
    assert tcmalloc.preload_plan(argv, env, LIB) is not None


def test_find_tcmalloc_in_given_folders(tmp_path):
    (tmp_path / "libtcmalloc_minimal.so.4").write_bytes(b"")
    assert tcmalloc.find_tcmalloc([tmp_path]) == str(tmp_path / "libtcmalloc_minimal.so.4")
    found = tcmalloc.find_tcmalloc([tmp_path / "missing"])
    assert found is None or "tcmalloc" in found  # may still be found by ldconfig on this machine


@pytest.mark.parametrize("argv,expected", [
    (["/venv/bin/python", "/venv/bin/mome", "predict"], True),
    (["python", "-m", "mome.cli.main", "info"], True),
    (["python", "-m", "pytest", "tests"], False),
    (["/venv/bin/python", "/venv/bin/pytest"], False),
    (["python"], False),
])
def test_only_the_mome_command_is_re_executed(argv, expected):
    assert tcmalloc.is_mome_command(argv) is expected
