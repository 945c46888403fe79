"""The named bad inputs (docs/reliability.md): one clear line, a non-zero exit, nothing written or lost."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bad_inputs import CASES, BadInput
from reliability_helpers import run_cli, snapshot

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


def assert_clean_failure(code: int, out: str, err: str, expect: str, expected_code: int = 1) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == expected_code, (code, err)
    assert "Traceback" not in err + out, err
    assert "internal error" not in err, err
    assert len(lines) == 1 and lines[0].startswith("mome: error: "), err
    assert expect in lines[0], (expect, lines[0])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_fails_cleanly(case: BadInput, tmp_path, tiny_model, monkeypatch, capsys):
    if case.name == "output in /proc" and not os.path.isdir("/proc"):
        pytest.skip("no /proc on this system")
    work = tmp_path / "w ü"  # a space and a non-ASCII letter in every path
    work.mkdir()
    args = case.build(work, tiny_model)
    before = snapshot(work)
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert_clean_failure(code, out, err, case.expect, case.code)
    assert snapshot(work) == before, "files were created, changed or removed"


def test_there_are_at_least_40_named_cases_and_the_doc_lists_each():
    names = [c.name for c in CASES]
    assert len(names) >= 40 and len(set(names)) == len(names)
    text = DOC.read_text()
    missing = [n for n in names if f"| {n} |" not in text]
    assert not missing, f"docs/reliability.md lacks {missing}"
