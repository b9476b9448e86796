"""Fixtures for every test: torch's threads, the datasets, the repository's root, PostgreSQL (a throwaway server
where it is installed), a small finished experiment (the CLI's and ``nasprune status``'s tests) and a hand-built pool
of size-sweep jobs (the sweep's and the proxy benchmark's decision rules). Test modules never import each other nor
this file: what they share is here, as fixtures."""

import contextlib
import glob
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from nasprune.data import load_dataset


@pytest.fixture(autouse=True, scope="session")
def _two_threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny nets on real data: one torch thread is faster than two, and much faster on a shared machine. For the
    modules that ask for it (``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def fmnist():
    """The real Fashion-MNIST data from the Debian package, split 50,000 / 10,000 / 10,000."""
    return load_dataset("fashion-mnist")


@pytest.fixture(scope="session")
def synthetic():
    return load_dataset("synthetic")


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository's root (results/, scripts/, the package)."""
    return Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def child_env(repo) -> dict:
    """The environment of a child Python process that imports this checkout's package, ahead of whatever
    PYTHONPATH this process has (the Optuna lower-bound test puts an older Optuna there)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), *filter(None, [os.environ.get("PYTHONPATH")])])}


@pytest.fixture()
def journal_replays(monkeypatch) -> dict:
    """Counts the journal storages opened from now on (``{"n": ...}``): each replays the whole journal file."""
    import optuna

    opened = {"n": 0}
    init = optuna.storages.JournalStorage.__init__

    def counted(self, *args, **kwargs):
        opened["n"] += 1
        init(self, *args, **kwargs)

    monkeypatch.setattr(optuna.storages.JournalStorage, "__init__", counted)
    return opened


@pytest.fixture()
def read_only_dir(tmp_path):
    """``make(fill=None) -> folder``: a folder that nothing can write into, holding what ``fill(folder)`` put there
    first. As root, whom file modes do not stop, it is a tmpfs mounted read-only (the "Read-only file system" a
    user meets on a read-only mount); otherwise mode 555."""
    mounted = []

    def make(fill=None):
        folder = tmp_path / f"read-only-{len(mounted)}"
        folder.mkdir()
        if os.geteuid() == 0:
            if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)],
                              capture_output=True).returncode != 0:
                pytest.skip("root here cannot mount a read-only folder (no mount permission)")
            mounted.append(folder)
        if fill is not None:
            fill(folder)
        if os.geteuid() == 0:
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        else:
            for d, _, _ in os.walk(folder):
                os.chmod(d, 0o555)
        return folder

    yield make
    for folder in mounted:
        subprocess.run(["umount", str(folder)], capture_output=True)
    for d, _, _ in os.walk(tmp_path):
        with contextlib.suppress(OSError):
            os.chmod(d, 0o755)


# --- PostgreSQL ------------------------------------------------------------------------------------------------

#: The port of the throwaway server the tests start themselves (scripts/start_postgres.sh's default is 55432).
TEST_PG_PORT = "55433"


def postgres_installed() -> bool:
    """Whether PostgreSQL's server binaries are here (Debian's ``postgresql`` package, as scripts/setup.sh installs)."""
    return bool(glob.glob("/usr/lib/postgresql/*/bin/initdb"))


@pytest.fixture(scope="session")
def postgres_server(repo):
    """A PostgreSQL URL for the multi-worker tests: NASPRUNE_TEST_PG_URL when set (CI's server), else a throwaway
    server that scripts/start_postgres.sh starts on port 55433 (and stops at the end, unless it was running
    already), so that the README's test command runs them too; None without PostgreSQL's server binaries."""
    url = os.environ.get("NASPRUNE_TEST_PG_URL")
    if url or not postgres_installed():
        yield url
        return
    script, env = str(repo / "scripts" / "start_postgres.sh"), {**os.environ, "NASPRUNE_PG_PORT": TEST_PG_PORT}
    ready = subprocess.run(["bash", "-c", f"$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/pg_isready -q "
                                          f"-h 127.0.0.1 -p {TEST_PG_PORT}"]).returncode == 0
    started = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=120)
    if started.returncode != 0:
        pytest.fail(f"scripts/start_postgres.sh could not start a server: {started.stderr.strip()[-500:]}")
    yield started.stdout.strip()
    if not ready:
        subprocess.run(["bash", script, "stop"], env=env, capture_output=True, timeout=120)


@pytest.fixture()
def pg_url(postgres_server) -> str:
    """The PostgreSQL URL of :func:`postgres_server`; the test is skipped without PostgreSQL's server binaries."""
    if not postgres_server:
        pytest.skip("no PostgreSQL: install it (apt-get install postgresql, as scripts/setup.sh does), or set "
                    "NASPRUNE_TEST_PG_URL to a server's URL")
    return postgres_server


@pytest.fixture(params=["journal", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request) -> str | None:
    """A test that takes it runs on both storages: the journal file (None) and PostgreSQL (its URL; skipped
    without PostgreSQL)."""
    return None if request.param == "journal" else request.getfixturevalue("pg_url")



# --- a small finished experiment --------------------------------------------------------------------------------

SMALL_CANDIDATES = ["w8-d1-relu-none-avgpooling", "w8-d1-relu-instancenorm-maxpooling",
                    "w8-d1-sigmoid-batchnorm-maxpooling"]


@pytest.fixture(scope="session")
def make_small_experiment(synthetic):
    """``make(directory, name="cli-test") -> directory``: an experiment of a random 200-image proxy ``random``
    (every 5th of the first 1,000 synthetic images) and the whole synthetic split, 3 candidates, one seed, one
    epoch: 6 jobs."""
    from nasprune.proxies import ProxySet
    from nasprune.search import Experiment

    def make(directory: Path, name: str = "cli-test") -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        ProxySet.from_selection(synthetic, np.arange(0, 1000, 5), "random").save(directory / "random.json")
        Experiment(name=name, dataset={"name": "synthetic"}, candidates=SMALL_CANDIDATES,
                   training_sets={"random": {"proxy": "random.json", "train": {"epochs": 1}},
                                  "whole": {"proxy": None, "train": {"epochs": 1}}}).save(directory)
        return directory

    return make


@pytest.fixture(scope="module")
def searched(tmp_path_factory, make_small_experiment) -> Path:
    """A small experiment (:func:`make_small_experiment`) whose 6 jobs have all finished, once per module."""
    from nasprune.search import run_search

    directory = make_small_experiment(tmp_path_factory.mktemp("searched") / "exp")
    run_search(directory, workers=0, progress=False)
    return directory


# --- a pool of size-sweep jobs ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sweep_pool() -> SimpleNamespace:
    """12 candidates whose whole-set test accuracy is ``truth`` (70 to 90, in candidate order), and ``rows(name,
    method, images, values, seed=0, proxy_minutes=0.0)``: a training set's job rows, validation accuracy
    ``values``, proxies at 10 s and 50 epochs a job, the whole set at 100 s and 10 epochs."""
    candidates = [f"w{w}-d{d}-relu-none-avgpooling" for w in (8, 16, 32) for d in (1, 2, 3, 4)]
    truth = np.linspace(70, 90, len(candidates))

    def rows(name, method, images, values, seed=0, proxy_minutes=0.0):
        return [{"training_set": name, "candidate": c, "seed": seed, "val_acc": v, "test_acc": t, "method": method,
                 "images": images, "seconds": 10.0 if name != "whole" else 100.0, "proxy_minutes": proxy_minutes,
                 "epochs": 50 if name != "whole" else 10}
                for c, v, t in zip(candidates, values, truth)]

    return SimpleNamespace(candidates=candidates, truth=truth, rows=rows)


@pytest.fixture()
def sweep_jobs(sweep_pool) -> pd.DataFrame:
    """The whole set (two seeds, within 0.1 of the truth), 10 random draws at 100 and at 200 images, and proxies:
    herding-10 in the truth's own order, easy-10 and easy-20 in the reverse order, easy-10-cheap (another
    network's) in the truth's order, and kcenter-10 one candidate short."""
    rows, truth = sweep_pool.rows, sweep_pool.truth
    rng = np.random.default_rng(0)
    jobs = rows("whole", "whole", 50000, truth + 0.1) + rows("whole", "whole", 50000, truth - 0.1, seed=1)
    for images in (100, 200):
        for d in range(10):
            jobs += rows(f"random-{images}-d{d}", "random", images, truth + rng.normal(0, 6, len(truth)))
    jobs += rows("herding-10", "herding", 100, truth, proxy_minutes=2.0)        # the truth's own order
    jobs += rows("easy-10", "easy", 100, -truth, proxy_minutes=2.0)             # the reverse order
    jobs += rows("easy-20", "easy", 200, -truth, proxy_minutes=2.0)
    jobs += rows("easy-10-cheap", "easy", 100, truth, proxy_minutes=0.5)     # another network, same method
    partial = rows("kcenter-10", "kcenter", 100, truth)[:-1]                   # one candidate short
    return pd.DataFrame(jobs + partial)
