"""The real `gensdk` command, run in subprocesses: train, generate, listings, audit, errors and exit codes.

Every run gets an environment of its own: GENSDK_AUDIT in a temporary directory, no plugin switches, no
GENSDK_CONFIG. One model is trained per module (1,000 rows of UCI Adult, 3 components, 20 EM iterations);
a policy plugin is installed for some tests by writing a tiny distribution (a `.dist-info` with a `gensdk`
entry point) into a temporary directory on PYTHONPATH, exactly as pip would leave it.

Each command pays for starting Python and importing torch, so independent commands are started together
(fixtures `early` and `generated`) and each test waits for the one it checks.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pytest

SWITCHES = ("GENSDK_LOAD_PLUGINS", "GENSDK_DISABLE_PLUGINS", "GENSDK_TRACE_PLUGINS", "GENSDK_CONFIG", "GENSDK_DEBUG")


class Run:
    """One `gensdk` subprocess, started at once; `result()` waits for it. Starting independent commands
    together lets their interpreter start-ups (each imports torch, seconds apiece) overlap."""

    def __init__(self, *args: Any, audit: Path, pythonpath: Path | None = None):
        env = {k: v for k, v in os.environ.items() if k not in SWITCHES}
        env["GENSDK_AUDIT"] = str(audit)
        # Many of these run at once on few cores: one BLAS/OpenMP thread each, or the pools spin against
        # each other (EM on 1,000 rows goes from under a second to ten).
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        env.setdefault("OMP_NUM_THREADS", "1")
        if pythonpath is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
        self._proc = subprocess.Popen([sys.executable, "-m", "gensdk", *map(str, args)], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._done: subprocess.CompletedProcess[str] | None = None

    def result(self) -> subprocess.CompletedProcess[str]:
        if self._done is None:
            try:
                out, err = self._proc.communicate(timeout=300)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                raise
            self._done = subprocess.CompletedProcess(self._proc.args, self._proc.returncode, out, err)
        return self._done


def gensdk(*args: Any, audit: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    return Run(*args, audit=audit, pythonpath=pythonpath).result()


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The whole of stderr, which must be exactly one non-empty line and no traceback."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    return lines[0]


BLOCKER = '''
"""A test policy plugin: blocks every table."""
from gensdk import Finding, Policy, hookimpl


class BlockTables(Policy):
    """Blocks every table it sees."""

    id = "tp-blocker"
    version = "1"
    modalities = frozenset({"table"})

    @hookimpl
    def inspect_output(self, outputs, context):
        return [Finding("tp-no-tables", "tables are not allowed", violation=True, output_index=i)
                for i in range(len(outputs))]


@hookimpl
def register_policies(register):
    register(BlockTables)
'''


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, adult_sample: pd.DataFrame) -> Path:
    """The module's files: training CSVs, configs, the blocker plugin's site directory; outputs go here too."""
    work = tmp_path_factory.mktemp("cli")
    adult_sample.head(1000).to_csv(work / "adult.csv", index=False)
    (work / "bad.csv").write_text('age,sex\n31,"Female\n40,Male\n')
    (work / "unknown-policy.toml").write_text('[[policies]]\nid = "no-such-policy"\n')
    (work / "blocker.toml").write_text('[[policies]]\nid = "tp-blocker"\n')
    site = work / "site"
    site.mkdir()
    (site / "tp_blocker.py").write_text(textwrap.dedent(BLOCKER))
    info = site / "tp_dist-1.0.dist-info"  # what pip leaves behind: metadata and the entry point
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tp_dist\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[gensdk]\nblocker = tp_blocker\n")
    return work


@pytest.fixture(scope="module")
def audit(work: Path) -> Path:
    return work / "audit.db"


@pytest.fixture(scope="module")
def model_dir(work: Path) -> Path:
    return work / "adult-gmm"


MISSING = Path("a/fairly/long/path/to/make/sure/the/error/line/is/never/wrapped/at/eighty/columns/model")


@pytest.fixture(scope="module")
def early(work: Path, audit: Path, model_dir: Path) -> Iterator[dict[str, Run]]:
    """Everything that needs no trained model, started together with the training run."""
    other = work / "other-audit.db"  # commands that must not touch the main trail
    site = work / "site"
    runs = {
        "train": Run("train", "gmm", "--data", work / "adult.csv", "--out", model_dir, "--components", 3,
                     "--max-iter", 20, "--license", "CC BY 4.0", "--target", "income", "--sensitive", "sex",
                     audit=audit),
        "unknown-policy": Run("generate", model_dir, "--n", 5, "--config", work / "unknown-policy.toml",
                              "--out", work / "never.csv", audit=other),
        "missing-model": Run("generate", work / MISSING, "--n", 5, audit=other),
        "malformed-csv": Run("train", "gmm", "--data", work / "bad.csv", "--out", work / "bad-model",
                             "--components", 2, audit=other),
        "bad-options": Run("train", "gmm", "--data", work / "adult.csv", "--out", work / "zero-model",
                           "--components", 0, audit=other),
        "version": Run("--version", audit=other),
        "plugins": Run("plugins", "--json", audit=other),
        "models": Run("models", audit=other),
        "models-json": Run("models", "--json", audit=other),
        "policies": Run("policies", "--json", audit=other),
        "policies-installed": Run("policies", "--json", audit=other, pythonpath=site),
    }
    yield runs
    for run in runs.values():  # no process outlives the module, whichever tests were selected
        run.result()


@pytest.fixture(scope="module")
def trained(early: dict[str, Run]) -> subprocess.CompletedProcess[str]:
    proc = early["train"].result()
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def generated(work: Path, audit: Path, model_dir: Path, trained: Any) -> Iterator[dict[str, Run]]:
    """The generation runs, started together once the model is trained."""
    runs = {
        "first": Run("generate", model_dir, "--n", 50, "--seed", 1, "--out", work / "out1.csv", "--json", audit=audit),
        "again": Run("generate", model_dir, "--n", 50, "--seed", 1, "--out", work / "out2.csv", audit=audit),
        "condition": Run("generate", model_dir, "--n", 40, "--seed", 2, "--condition", "sex=Female",
                         "--condition", "age=33", "--out", work / "women.csv", audit=audit),
        "blocked": Run("generate", model_dir, "--n", 20, "--seed", 4, "--config", work / "blocker.toml",
                       "--out", work / "blocked.csv", audit=work / "blocked-audit.db", pythonpath=work / "site"),
    }
    yield runs
    for run in runs.values():
        run.result()


# -- train and generate -----------------------------------------------------------------------------------------

def test_train_saves_a_model_directory(trained: subprocess.CompletedProcess[str], model_dir: Path, work: Path) -> None:
    assert (model_dir / "gensdk_model.json").is_file() and (model_dir / "model.safetensors").is_file()
    assert f"saved {model_dir}" in trained.stdout and "1000 rows, 3 components" in trained.stdout
    manifest = json.loads((model_dir / "gensdk_model.json").read_text())
    assert manifest["family"] == "gmm" and manifest["license"] == "CC BY 4.0"
    roles = {c["name"]: (c["sensitive"], c["target"]) for c in manifest["schema"]}
    assert roles["sex"] == (True, False) and roles["income"] == (False, True) and roles["age"] == (False, False)
    assert manifest["data_source"] == str(work / "adult.csv")  # --data-source defaults to the CSV's path


def test_generate_writes_the_rows_and_a_json_summary(generated: dict[str, Run], work: Path) -> None:
    proc = generated["first"].result()
    assert proc.returncode == 0, proc.stderr
    frame = pd.read_csv(work / "out1.csv")
    assert len(frame) == 50
    assert list(frame.columns) == list(pd.read_csv(work / "adult.csv", nrows=1).columns)
    summary = json.loads(proc.stdout)
    assert summary["verdict"] == "pass" and summary["released"] == 1 and summary["blocked"] == []
    assert summary["seed"] == 1 and summary["written"] == [str(work / "out1.csv")]
    assert isinstance(summary["audit_record_id"], str) and len(summary["audit_record_id"]) >= 16


def test_the_same_seed_writes_the_same_file(generated: dict[str, Run], work: Path) -> None:
    first, again = generated["first"].result(), generated["again"].result()
    assert first.returncode == again.returncode == 0, again.stderr
    assert "verdict pass: 1 of 1 outputs released (seed 1" in again.stdout
    assert (work / "out2.csv").read_bytes() == (work / "out1.csv").read_bytes()


def test_generate_with_a_condition(generated: dict[str, Run], work: Path) -> None:
    proc = generated["condition"].result()
    assert proc.returncode == 0, proc.stderr
    frame = pd.read_csv(work / "women.csv")
    assert len(frame) == 40 and set(frame["sex"]) == {"Female"} and set(frame["age"]) == {33}


# -- errors: exit code and one line -----------------------------------------------------------------------------

def test_a_policy_that_does_not_exist_is_a_config_error(early: dict[str, Run], work: Path) -> None:
    proc = early["unknown-policy"].result()
    assert proc.returncode == 2
    line = one_line_error(proc)
    assert line.startswith("error:") and "unknown policy 'no-such-policy'" in line
    assert not (work / "never.csv").exists()


def test_a_missing_model_directory(early: dict[str, Run], work: Path) -> None:
    proc = early["missing-model"].result()
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert str(work / MISSING) in line and "does not exist" in line


def test_train_on_a_malformed_csv(early: dict[str, Run], work: Path) -> None:
    proc = early["malformed-csv"].result()
    assert proc.returncode == 2
    assert "not a readable CSV" in one_line_error(proc)
    assert not (work / "bad-model").exists()


def test_invalid_training_options_are_usage_errors(early: dict[str, Run], work: Path) -> None:
    proc = early["bad-options"].result()
    assert proc.returncode == 2
    assert "invalid GMM options: n_components" in one_line_error(proc)
    assert not (work / "zero-model").exists()


# -- listings ---------------------------------------------------------------------------------------------------

def test_version(early: dict[str, Run]) -> None:
    from gensdk import __version__

    proc = early["version"].result()
    assert proc.returncode == 0 and proc.stdout.strip() == f"gensdk, version {__version__}"


def test_plugins(early: dict[str, Run]) -> None:
    proc = early["plugins"].result()
    assert proc.returncode == 0, proc.stderr
    by_name = {p["name"]: p for p in json.loads(proc.stdout)}
    assert by_name["gmm"]["status"] == "loaded" and "register_model_families" in by_name["gmm"]["hooks"]
    assert by_name["gensdk.builtin"]["status"] == "essential"


def test_models(early: dict[str, Run]) -> None:
    table, as_json = early["models"].result(), early["models-json"].result()
    assert table.returncode == as_json.returncode == 0, table.stderr + as_json.stderr
    assert "gmm" in table.stdout and "table" in table.stdout
    gmm = {m["id"]: m for m in json.loads(as_json.stdout)}["gmm"]
    assert (gmm["modality"], gmm["can_train"], gmm["conditional"]) == ("table", True, True)


def test_policies(early: dict[str, Run]) -> None:
    proc = early["policies"].result()
    assert proc.returncode == 0, proc.stderr
    assert "tp-blocker" not in {p["id"] for p in json.loads(proc.stdout)}  # only on the blocker's PYTHONPATH


# -- audit ------------------------------------------------------------------------------------------------------

def test_audit_verify_after_generating(generated: dict[str, Run], audit: Path) -> None:
    assert all(generated[k].result().returncode == 0 for k in ("first", "again", "condition"))
    proc = gensdk("audit", "verify", audit=audit)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verifies" in proc.stdout
    report = json.loads(gensdk("audit", "verify", "--json", audit=audit).stdout)
    assert report["ok"] is True and report["records"] == 3


def test_audit_show_lists_the_generation(generated: dict[str, Run], audit: Path) -> None:
    record_id = json.loads(generated["first"].result().stdout)["audit_record_id"]
    proc = gensdk("audit", "show", "--json", audit=audit)
    assert proc.returncode == 0, proc.stderr
    bodies = {r["record_id"]: r["body"] for r in json.loads(proc.stdout)}
    assert bodies[record_id]["verdict"] == "pass" and bodies[record_id]["model"]["family"] == "gmm"
    table = gensdk("audit", "show", audit=audit)
    assert table.returncode == 0 and record_id[:12] in table.stdout


# -- a policy plugin installed on the fly -----------------------------------------------------------------------

def test_an_installed_policy_is_listed(early: dict[str, Run]) -> None:
    proc = early["policies-installed"].result()
    assert proc.returncode == 0, proc.stderr
    row = {p["id"]: p for p in json.loads(proc.stdout)}["tp-blocker"]
    assert (row["plugin"], row["distribution"]) == ("blocker", "tp_dist 1.0")
    assert row["modalities"] == ["table"] and row["doc"] == "Blocks every table it sees."


def test_a_blocking_policy_withholds_the_output(generated: dict[str, Run], work: Path) -> None:
    proc = generated["blocked"].result()
    assert proc.returncode == 3, proc.stderr
    line = one_line_error(proc)
    assert "1 of 1 outputs blocked" in line and "tp-blocker: tp-no-tables" in line
    assert not (work / "blocked.csv").exists()
    assert "verdict block: 0 of 1 outputs released" in proc.stdout

    trail = work / "blocked-audit.db"
    verify = gensdk("audit", "verify", audit=trail)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    [record] = json.loads(gensdk("audit", "show", "--json", audit=trail).stdout)
    body = record["body"]
    assert body["verdict"] == "block" and body["released"] == 0
    assert [o["verdict"] for o in body["outputs"]] == ["block"]
    [policy] = body["policies"]
    assert policy["id"] == "tp-blocker" and policy["status"] == "violation" and policy["verdict"] == "block"
    with sqlite3.connect(trail) as db:  # the same record, read straight from the SQLite file
        [(stored,)] = db.execute("SELECT body FROM records").fetchall()
    assert json.loads(stored)["record_id"] == record["record_id"]
