"""Recipes check what their later stages need before anything is trained: a missing KenLM
build prerequisite or scoring interpreter stops them at once with one line saying how to get
it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def run_recipe(name: str, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """recipes/NAME/run.sh on a corpus folder that does not exist: any stage that got to run
    would fail in its own way."""
    env = {**os.environ, "ASR": f"{sys.executable} -m asr.cli", **env}
    cmd = ["bash", str(ROOT / "recipes" / name / "run.sh"), "--exp-dir", str(tmp_path / "exp")]
    cmd += ["--source", str(tmp_path / "no-corpus"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)


@pytest.mark.skipif(shutil.which("lmplz") is not None, reason="KenLM is on the PATH")
@pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler")
@pytest.mark.parametrize("recipe", ["yesno", "an4", "mini_librispeech"])
def test_recipe_without_boost_stops_before_training(
    recipe: str, tmp_path: Path, cxx_without_boost: Path
):
    # An empty KenLM cache and a compiler without Boost: KenLM cannot be built.
    run = run_recipe(
        recipe, tmp_path, ASR_CACHE=str(tmp_path / "cache"), CXX=str(cxx_without_boost)
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "== stage" not in run.stdout  # not even the data preparation ran
    assert not (tmp_path / "exp" / "data").exists()
    error, stop = run.stderr.splitlines()[-2:]
    assert error.startswith("asr: error: cannot build KenLM (lmplz, build_binary not on PATH): ")
    assert "Boost thread" in error and "apt-get install libboost-program-options-dev" in error
    assert stop == (
        f"recipes/{recipe}/run.sh: stage 2 needs what is named above: install it, then run the "
        "recipe again"
    )


def test_recipe_without_lm_stage_does_not_check_kenlm(tmp_path: Path, cxx_without_boost: Path):
    run = run_recipe(
        "yesno",
        tmp_path,
        "--stop-stage",
        "1",
        ASR_CACHE=str(tmp_path / "cache"),
        CXX=str(cxx_without_boost),
    )
    assert "KenLM" not in run.stdout + run.stderr
    assert "== stage 0: manifests" in run.stdout  # and stage 0 fails on the missing corpus
    assert run.returncode == 1


def test_timit_refuses_a_scoring_python_without_the_toolkit(tmp_path: Path):
    run = run_recipe("timit", tmp_path, "--phones", "61", PYTHON="false")
    assert run.returncode == 2
    assert run.stderr == (
        "recipes/timit/run.sh: stage 3 scores --phones 61 on the 39 classes with false (PYTHON), "
        "which cannot import the toolkit: set PYTHON to the toolkit's python (make install: "
        ".venv/bin/python) (see --help)\n"
    )
