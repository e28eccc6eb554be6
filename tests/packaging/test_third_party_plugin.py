"""A third-party plugin, packaged and installed on its own, is found exactly like a built-in.

`example_plugin/` is a separate distribution (`gensdk-example-plugin`) with a text family (`echo`), a policy
(`no-shouting`) and a command (`gensdk example hello`). The slow tests install it with pip into a directory of
its own and drive gensdk in subprocesses with that directory on PYTHONPATH, so discovery goes through
importlib.metadata and the `gensdk` entry-point group, as it would for a user. The fast tests import the
plugin's source directly and run its family through the conformance kit, proving the kit works for a family
gensdk has never heard of.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from gensdk.errors import RequestError
from gensdk.testing import make_engine
from gensdk.testing.conformance import FamilyConformance
from gensdk.verdicts import Verdict

EXAMPLE_SRC = Path(__file__).resolve().parent / "example_plugin"

# Import the plugin from its source for the in-process tests, then take the directory off sys.path again:
# the package stays importable (its submodules resolve through the package's __path__) while nothing else in
# the session can pick up this directory by accident.
sys.path.insert(0, str(EXAMPLE_SRC))
try:
    import gensdk_example.plugin
    from gensdk_example.model import EchoFamily
    from gensdk_example.policy import NoShouting
finally:
    sys.path.remove(str(EXAMPLE_SRC))

DISTRIBUTION = "gensdk-example-plugin 0.1.0"
PROMPTS = ["hello there", "PLEASE STOP SHOUTING", "quiet please"]


# -- in process: the conformance kit on an outside family ---------------------------------------------------


class TestEchoConformance(FamilyConformance):
    family = EchoFamily
    plugin = gensdk_example.plugin
    request = {"n": 4}

    def make_model(self) -> EchoFamily:
        return EchoFamily()


def test_no_shouting_blocks_only_the_capitals(tmp_path: Path) -> None:
    with make_engine(tmp_path, plugins=[gensdk_example.plugin], policies=[NoShouting()]) as engine:
        result = engine.generate(EchoFamily(), prompts=PROMPTS, n=3, seed=7)
    assert result.output_verdicts == [Verdict.PASS, Verdict.BLOCK, Verdict.PASS]
    assert [o.prompt for o in result.outputs] == ["hello there", "quiet please"]
    assert [(f.code, f.output_index) for f in result.findings] == [("shouting", 1)]


def test_echo_follows_its_prompts_across_micro_batches(tmp_path: Path) -> None:
    prompts = [f"prompt {i}" for i in range(5)]
    with make_engine(tmp_path, config={"max_batch_size": 2}) as engine:
        result = engine.generate(EchoFamily(), prompts=prompts, n=5, seed=1)
        with pytest.raises(RequestError, match="one text per prompt"):
            engine.generate(EchoFamily(), prompts=prompts, n=4, seed=1)
    assert [o.prompt for o in result.outputs] == prompts
    assert all(o.text.startswith(o.prompt + " ") for o in result.outputs)


# -- installed with pip, driven in subprocesses ------------------------------------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pip-install the example plugin into a directory of its own; return that directory.

    It is built from a copy, so pip's in-tree build leaves no build/ or *.egg-info in the source directory
    (an egg-info there would be an entry point visible to anything that puts the directory on sys.path)."""
    root = tmp_path_factory.mktemp("third-party")
    source = root / "src"
    shutil.copytree(EXAMPLE_SRC, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = root / "tp"
    _check(subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-input",
         "--disable-pip-version-check", "--quiet", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=180,
    ))
    assert (target / "gensdk_example" / "plugin.py").is_file()
    return target


def _env(site: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.pop("GENSDK_DEBUG", None)
    return env


def _run(args: list[str], site: Path, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    # cwd is a scratch directory: nothing there can shadow an installed package.
    return subprocess.run([sys.executable, *args], env=_env(site, **extra), cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def _check(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    return proc


def _gensdk_json(args: list[str], site: Path, cwd: Path, **extra: str) -> Any:
    return json.loads(_check(_run(["-m", "gensdk", *args, "--json"], site, cwd, **extra)).stdout)


@pytest.mark.slow
def test_plugins_lists_the_installed_plugin(installed: Path, tmp_path: Path) -> None:
    rows = {row["name"]: row for row in _gensdk_json(["plugins"], installed, tmp_path)}
    example = rows["example"]
    assert example["distribution"] == DISTRIBUTION
    assert example["status"] == "loaded"
    assert {"register_model_families", "register_policies", "register_commands"} <= set(example["hooks"])
    assert rows["gensdk.builtin"]["status"] == "essential"


@pytest.mark.slow
def test_models_and_policies_list_its_components(installed: Path, tmp_path: Path) -> None:
    families = {row["id"]: row for row in _gensdk_json(["models"], installed, tmp_path)}
    policies = {row["id"]: row for row in _gensdk_json(["policies"], installed, tmp_path)}
    assert families["echo"]["distribution"] == DISTRIBUTION and families["echo"]["plugin"] == "example"
    assert families["echo"]["modality"] == "text"
    assert policies["no-shouting"]["distribution"] == DISTRIBUTION
    assert policies["no-shouting"]["modalities"] == ["text"]


@pytest.mark.slow
def test_its_command_joins_the_cli(installed: Path, tmp_path: Path) -> None:
    proc = _check(_run(["-m", "gensdk", "example", "hello", "--name", "tester"], installed, tmp_path))
    assert proc.stdout.strip() == "hello, tester, from gensdk-example-plugin (family 'echo')"


ENGINE_SNIPPET = textwrap.dedent("""
    import json, sys
    from pathlib import Path

    import gensdk, gensdk_example

    site, work = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
    assert Path(gensdk_example.__file__).resolve().is_relative_to(site), gensdk_example.__file__
    with gensdk.Engine(config={"policies": [{"id": "no-shouting"}]}, audit=work / "audit.db") as engine:
        saved = engine.family("echo")().save(work / "echo-model")
        model = engine.load_model(saved)
        request = {"prompts": json.loads(sys.argv[3]), "n": 3, "seed": 7}
        result = engine.generate(model, request)
        again = engine.generate(str(saved), request)
        report = engine.audit.verify()
    print(json.dumps({
        "family_module": type(model).__module__,
        "verdict": result.verdict.value,
        "output_verdicts": [v.value for v in result.output_verdicts],
        "released": [o.text for o in result.outputs],
        "again": [o.text for o in again.outputs],
        "findings": [[f.policy_id, f.code, f.output_index] for f in result.findings],
        "model": result.model,
        "audit": report.to_dict(),
    }))
""")


@pytest.mark.slow
def test_engine_runs_its_family_under_its_policy(installed: Path, tmp_path: Path) -> None:
    proc = _check(_run(["-c", ENGINE_SNIPPET, str(installed), str(tmp_path), json.dumps(PROMPTS)], installed, tmp_path))
    out = json.loads(proc.stdout)
    assert out["family_module"] == "gensdk_example.model"
    assert out["output_verdicts"] == ["pass", "block", "pass"]
    assert out["verdict"] == "block"  # something was withheld, so the request as a whole is not a pass
    assert out["findings"] == [["no-shouting", "shouting", 1]]
    assert [t.split(" ", 2)[:2] for t in out["released"]] == [["hello", "there"], ["quiet", "please"]]
    assert not any(t.isupper() for t in out["released"])
    assert out["again"] == out["released"]  # same seed, same prompts, model loaded by path: same texts
    assert out["model"]["family"] == "echo" and out["model"]["weights_digest"]
    assert out["audit"]["ok"] and out["audit"]["records"] == 2, out["audit"]


@pytest.mark.slow
def test_disabled_plugin_is_absent_and_says_so(installed: Path, tmp_path: Path) -> None:
    switch = {"GENSDK_DISABLE_PLUGINS": "example"}
    rows = {row["name"]: row for row in _gensdk_json(["plugins"], installed, tmp_path, **switch)}
    assert rows["example"]["status"] == "disabled"
    assert rows["example"]["distribution"] == DISTRIBUTION and rows["example"]["hooks"] == []
    assert "echo" not in {row["id"] for row in _gensdk_json(["models"], installed, tmp_path, **switch)}
    assert "no-shouting" not in {row["id"] for row in _gensdk_json(["policies"], installed, tmp_path, **switch)}
    proc = _run(["-m", "gensdk", "example", "hello"], installed, tmp_path, **switch)
    assert proc.returncode == 2 and "example" in proc.stderr, proc.stderr
