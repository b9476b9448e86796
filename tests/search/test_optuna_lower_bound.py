"""The job store and the runner on the lowest Optuna that pyproject.toml allows, as well as on the installed one.

``scripts/setup.sh`` installs that version beside the virtualenv's own (``.venv/optuna-lower-bound``); this test
installs it there itself when it is missing, then runs the search stage's fast tests, the workflows' and a SIGKILL
and resume in a subprocess that imports it first."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lowest_optuna(repo) -> tuple[str, dict]:
    """The lowest version pyproject.toml allows, and an environment whose ``import optuna`` is that version."""
    lowest = re.search(r'"optuna>=([0-9.]+)"', (repo / "pyproject.toml").read_text()).group(1)
    target = Path(sys.prefix) / "optuna-lower-bound"
    if not any(target.glob(f"optuna-{lowest}*.dist-info")):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                        f"optuna=={lowest}"], check=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(repo)])}
    return lowest, env


def test_the_environment_imports_the_lowest_optuna(lowest_optuna):
    lowest, env = lowest_optuna
    found = subprocess.run([sys.executable, "-c", "import optuna; print(optuna.__version__)"], env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert found.split(".")[:2] == lowest.split(".")[:2] and found != __import__("optuna").__version__


@pytest.mark.parametrize("args", [
    ["-m", "not slow", "tests/search", "tests/workflows"],
    ["tests/search/test_runner.py::test_sigkill_then_resume_keeps_finished_jobs_and_matches_uninterrupted_run",
     "tests/search/test_runner.py::test_two_commands_at_once_queue_and_train_each_job_once"]],
    ids=["fast tests", "sigkill and two commands"])
def test_the_search_tests_pass_on_the_lowest_optuna(repo, lowest_optuna, args):
    _, env = lowest_optuna
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *args], cwd=repo,
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout.splitlines()[-1]
