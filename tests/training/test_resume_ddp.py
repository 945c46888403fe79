"""Resume after SIGKILL (same command, same total steps, same weights), SIGTERM reported and resumable, and
DDP with torchrun on CPU."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from mome.training.stages import train_system

EPOCHS, ITERS = 24, 2


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _command(collection, out, *extra):
    return [sys.executable, "-m", "mome.cli.main", "train", "system", "single", "--collection", str(collection),
            "--out", str(out), "--preset", "tiny", "--epochs", str(EPOCHS), "--iterations", str(ITERS),
            "--threads", "1", "--no-progress", *extra]


def _epochs_logged(out) -> int:
    try:
        with open(out / "log.csv", newline="") as fh:
            return len(list(csv.DictReader(fh)))
    except OSError:
        return 0


def _start_and_wait_for_epochs(collection, out, epochs: int, *extra) -> subprocess.Popen:
    """Start the training command (in a session of its own) and return once ``epochs`` epochs are logged
    and a checkpoint exists."""
    proc = subprocess.Popen(_command(collection, out, *extra), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 240
    while _epochs_logged(out) < epochs or not (out / "checkpoints" / "last.ckpt").is_file():
        assert proc.poll() is None, f"training ended before it could be stopped: {proc.stderr.read()[-2000:]}"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    return proc


@pytest.mark.slow
def test_sigkill_then_same_command_resumes_to_the_same_end(tmp_path, collection_path):
    out = tmp_path / "run"
    proc = _start_and_wait_for_epochs(collection_path, out, 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (out / "status.json").exists(), "the run finished before the kill; raise EPOCHS"
    killed_after = _epochs_logged(out)
    assert 3 <= killed_after < EPOCHS

    again = subprocess.run(_command(collection_path, out), env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming" in again.stderr
    status = json.loads((out / "status.json").read_text())
    assert status["finished"] and status["resumed"] and status["optimizer_steps"] == EPOCHS * ITERS
    with open(out / "log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == list(range(EPOCHS)), "one log row per epoch, none repeated"
    assert [int(r["optimizer_steps"]) for r in rows] == [ITERS * (e + 1) for e in range(EPOCHS)]

    # an uninterrupted run with the same command-line settings ends with the same weights
    ref = train_system("single", collection_path, tmp_path / "ref", preset="tiny",
                       overrides={"epochs": EPOCHS, "iterations_per_epoch": ITERS}, progress=False, log=lambda m: None)
    assert json.loads((ref / "status.json").read_text())["optimizer_steps"] == EPOCHS * ITERS
    resumed, uninterrupted = (load_file(str(o / "final" / "model.safetensors")) for o in (out, ref))
    assert all((resumed[k] == uninterrupted[k]).all() for k in resumed)


@pytest.mark.slow
def test_sigterm_ends_with_a_resume_message_and_exit_143_then_resumes(tmp_path, collection_path):
    """Lightning turns SIGTERM into a SystemExit without a code (status 0); the CLI must report it."""
    out = tmp_path / "run"
    proc = _start_and_wait_for_epochs(collection_path, out, 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    assert "stopped by SIGTERM" in err and "run the same command again to resume" in err
    assert not (out / "status.json").exists() and not (out / "final").exists()
    assert json.loads((out / "run.json").read_text())["finished"] is False

    again = subprocess.run(_command(collection_path, out), env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming" in again.stderr
    assert json.loads((out / "status.json").read_text())["optimizer_steps"] == EPOCHS * ITERS


@pytest.mark.slow
def test_sigterm_to_the_process_group_with_loader_workers_is_the_same_clean_stop(tmp_path, collection_path):
    """A scheduler (SLURM), `pkill -f` or Ctrl-C signals every process of the job, DataLoader workers
    included: the workers must leave the stop to the training process, not die first and turn it into
    'DataLoader worker exited unexpectedly'."""
    out = tmp_path / "run"
    proc = _start_and_wait_for_epochs(collection_path, out, 2, "--num-workers", "1")
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    assert "stopped by SIGTERM" in err and "internal error" not in err, err[-2000:]
    assert not (out / "final").exists()


@pytest.mark.slow
def test_torchrun_two_processes_train_tiny_stage2_on_cpu(tmp_path, collection_path, experts_run):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
           "-m", "mome.cli.main", "train", "mome", "--collection", str(collection_path), "--experts", str(experts_run),
           "--out", str(out), "--epochs", "2", "--iterations", "2", "--no-progress"]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "GLOBAL_RANK: 1" in r.stdout + r.stderr
    status = json.loads((out / "status.json").read_text())
    assert status["finished"] and status["optimizer_steps"] == 4
    assert json.loads((out / "run.json").read_text())["finished"]
    with open(out / "log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert (out / "final" / "model.safetensors").is_file() and (out / "checkpoints" / "last.ckpt").is_file()
