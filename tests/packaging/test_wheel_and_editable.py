"""Both ways gensdk is installed import every built-in plugin: a built wheel, and the editable checkout.

The expected built-ins are read from the repository's pyproject.toml, so a new entry in
`[project.entry-points.gensdk]` is checked here without touching this file.

The wheel is checked in a subprocess that cannot see the checkout: `python -S` skips site-packages' .pth files,
so the editable install's import hook (`__editable__.gensdk-*.pth`) never runs; PYTHONPATH holds the wheel's
install directory first and the development environment's site-packages after it, for the dependencies only;
`-P` and a scratch working directory keep the repository root off sys.path. The subprocess then proves where
everything came from: gensdk, the `gensdk` distribution metadata, every entry point's module and every
registered family all live under the wheel's directory, and no module was imported from the checkout.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PLUGIN_DIRS = ("plugins", "policies")  # first-party plugin packages, named gensdk_*
# Never copied into the build tree: pip builds in place, and a stale build/lib would leak removed modules into
# the wheel (setuptools does not clean it).
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", "*.db*", "out"
)


def _declared_entry_points() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return dict(project.get("entry-points", {}).get("gensdk", {}))


def _first_party_packages() -> list[Path]:
    return sorted(p.parent for d in PLUGIN_DIRS for p in (REPO / d).glob("gensdk_*/__init__.py"))


def _check(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel with pip, as a user would, from a clean copy of the source tree."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    _check(subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-input",
         "--disable-pip-version-check", "--quiet", "-w", str(root / "dist"), str(source)],
        capture_output=True, text=True, timeout=300,
    ))
    (built,) = (root / "dist").glob("gensdk-*.whl")
    return built


@pytest.fixture(scope="module")
def site(wheel: Path) -> Path:
    target = wheel.parent.parent / "site"
    _check(subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-input", "--disable-pip-version-check",
         "--quiet", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300,
    ))
    return target


def _wheel_python(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Python that sees the wheel and the dependencies, but neither the checkout nor the editable hook."""
    paths = sysconfig.get_paths()
    dependencies = dict.fromkeys([paths["purelib"], paths["platlib"]])  # ordered, deduplicated
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *dependencies])
    return subprocess.run([sys.executable, "-S", "-P", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


# -- the wheel's contents ----------------------------------------------------------------------------------


def test_wheel_ships_the_package_data_and_every_first_party_package(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"gensdk/py.typed", "gensdk/datasets/adult.csv.gz", "gensdk/__main__.py"} <= names
    for package in _first_party_packages():
        assert f"{package.name}/__init__.py" in names, f"{package.relative_to(REPO)} is missing from the wheel"
        if (package / "py.typed").exists():
            assert f"{package.name}/py.typed" in names
    leaked = sorted(n for n in names if n.split("/")[0] in {"tests", "plugins", "policies", "benchmarks", "docs"})
    assert not leaked, f"the wheel ships files that are not the library: {leaked}"


def test_wheel_declares_the_entry_points_of_pyproject(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        (path,) = [n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt")]
        parser = configparser.ConfigParser(delimiters=("=",))
        parser.optionxform = str  # type: ignore[assignment,method-assign]  # entry point names are case-sensitive
        parser.read_string(zf.read(path).decode("utf-8"))
    declared = _declared_entry_points()
    assert declared, "pyproject.toml declares no built-in plugin under [project.entry-points.gensdk]"
    assert dict(parser["gensdk"]) == declared
    assert parser["console_scripts"]["gensdk"] == "gensdk.cli.main:main"


# -- the installed wheel, with the checkout out of sight ---------------------------------------------------

WHEEL_SNIPPET = textwrap.dedent("""
    import json, sys
    from importlib import metadata
    from pathlib import Path

    site, repo = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    sources = [repo / folder for folder in ("gensdk", "plugins", "policies")]  # not .venv, which may live there

    def where(path):
        path = Path(path).resolve()
        if path.is_relative_to(site):
            return "wheel"
        return "checkout" if any(path.is_relative_to(s) for s in sources) else str(path)

    import gensdk
    from gensdk.datasets import load_adult
    from gensdk.plugins import ENTRYPOINT_GROUP, get_plugin_host

    dist = metadata.distribution("gensdk")  # the first on sys.path: the wheel's, if it shadows the editable one
    ours = [ep for ep in dist.entry_points if ep.group == ENTRYPOINT_GROUP]
    seen = [ep for ep in metadata.entry_points(group=ENTRYPOINT_GROUP) if ep.dist.name == "gensdk"]
    modules = {ep.name: where(ep.load().__file__) for ep in ours}
    host = get_plugin_host()

    def component(reg):
        return {"plugin": reg.plugin, "distribution": reg.distribution,
                "file": where(sys.modules[reg.component.__module__].__file__)}

    print(json.dumps({
        "gensdk": where(gensdk.__file__),
        "version": gensdk.__version__,
        "dist": where(dist._path),
        "entry_points": {ep.name: ep.value for ep in ours},
        "discovered": sorted((ep.name, where(ep.dist._path)) for ep in seen),
        "entry_point_modules": modules,
        "plugins": {p.name: [p.status, p.distribution] for p in host.plugins},
        "plugin_files": {p.name: where(host.pm.get_plugin(p.name).__file__)
                         for p in host.plugins if p.status in ("loaded", "essential")},
        "hooks": {p.name: sorted(c.name for c in host.pm.get_hookcallers(host.pm.get_plugin(p.name)) or [])
                  for p in host.plugins if p.status == "loaded"},
        "families": {r.id: component(r) for r in host.families},
        "policies": {r.id: component(r) for r in host.policies},
        "adult_rows": len(load_adult()),
        "from_checkout": sorted(name for name, m in sys.modules.items()
                                if getattr(m, "__file__", None) and where(m.__file__) == "checkout"),
        "editable_hook": [repr(f) for f in sys.meta_path if "editable" in repr(f).lower()],
    }))
""")


@pytest.fixture(scope="module")
def from_wheel(site: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    cwd = tmp_path_factory.mktemp("wheel-run")
    proc = _check(_wheel_python(site, cwd, "-c", WHEEL_SNIPPET, str(site), str(REPO)))
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_wheel_is_what_gets_imported(from_wheel: dict[str, Any]) -> None:
    assert from_wheel["editable_hook"] == [], "the editable install's import hook is active; the check proves nothing"
    assert from_wheel["gensdk"] == "wheel"
    assert from_wheel["dist"] == "wheel"
    assert from_wheel["from_checkout"] == []
    # importlib.metadata may also see the editable install's dist-info; entry_points() keeps the first only.
    assert from_wheel["discovered"] == sorted([name, "wheel"] for name in _declared_entry_points())


def test_wheel_loads_every_built_in_plugin(from_wheel: dict[str, Any]) -> None:
    declared = _declared_entry_points()
    assert from_wheel["entry_points"] == declared
    assert from_wheel["entry_point_modules"] == {name: "wheel" for name in declared}
    core = f"gensdk {from_wheel['version']}"
    for name in declared:
        assert from_wheel["plugins"][name] == ["loaded", core], from_wheel["plugins"]
        assert from_wheel["plugin_files"][name] == "wheel"
    assert from_wheel["plugin_files"]["gensdk.builtin"] == "wheel"


def test_wheel_registers_every_built_in_component(from_wheel: dict[str, Any]) -> None:
    components = {**from_wheel["families"], **from_wheel["policies"]}
    hooks = from_wheel["hooks"]
    for name in _declared_entry_points():
        for hook, registry in (("register_model_families", "families"), ("register_policies", "policies")):
            if hook in hooks[name]:
                mine = [cid for cid, c in from_wheel[registry].items() if c["plugin"] == name]
                assert mine, f"built-in plugin {name!r} implements {hook} but registered no {registry}"
    built_in = {cid: c for cid, c in components.items() if c["plugin"] in _declared_entry_points()}
    assert "gmm" in from_wheel["families"]  # the reference family; the loop above covers the rest
    for cid, c in built_in.items():
        assert c["file"] == "wheel", f"{cid} was imported from {c['file']}"
        assert c["distribution"] == f"gensdk {from_wheel['version']}"


def test_wheel_ships_the_demo_dataset(from_wheel: dict[str, Any]) -> None:
    assert from_wheel["adult_rows"] == 30_162


def test_wheel_cli_lists_the_built_ins(site: Path, tmp_path: Path) -> None:
    proc = _check(_wheel_python(site, tmp_path, "-m", "gensdk", "plugins", "--json"))
    statuses = {row["name"]: row["status"] for row in json.loads(proc.stdout)}
    assert statuses["gensdk.builtin"] == "essential"
    for name in _declared_entry_points():
        assert statuses.get(name) == "loaded", statuses


# -- the PII detectors, compiled with mypyc (setup.py) --------------------------------------------------------

COMPILED = ("addresses", "checksums", "detectors", "names", "numbers", "phones")
PRIVACY_TESTS = ("test_pii.py", "test_pii_batch.py", "test_pii_detectors.py", "test_pii_modules.py")
COMPILED_RUN = textwrap.dedent("""
    import importlib, sys
    from pathlib import Path

    import pytest

    site = Path(sys.argv[1]).resolve()
    for name in sys.argv[2].split(","):
        module = importlib.import_module(f"gensdk_privacy.{name}")
        path = Path(module.__file__).resolve()
        assert path.is_relative_to(site) and path.suffix == ".so", f"gensdk_privacy.{name} is {path}"
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "--rootdir", sys.argv[3], *sys.argv[4:]]))
""")


def _c_compiler() -> str | None:
    return shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0])


def test_wheel_holds_the_pii_detectors_compiled(wheel: Path) -> None:
    if _c_compiler() is None:
        pytest.skip("no C compiler: setup.py leaves the PII detectors pure Python")
    names = zipfile.ZipFile(wheel).namelist()
    compiled = {n.split("/")[1].split(".")[0] for n in names if n.startswith("gensdk_privacy/") and n.endswith(".so")}
    assert compiled == set(COMPILED)
    assert any(n.startswith("gensdk_privacy_detectors__mypyc.") for n in names), "the modules' shared library is missing"
    assert "-none-any" not in wheel.name, "a wheel holding compiled modules must carry a platform tag"


def test_compiled_pii_detectors_pass_the_detector_tests(site: Path) -> None:
    """The tests of the pure-Python detectors, run on the compiled ones: mypyc compiles the same files, but a
    compiled class can behave differently (a `functools.cached_property` there does not cache, for one)."""
    if _c_compiler() is None:
        pytest.skip("no C compiler: setup.py leaves the PII detectors pure Python")
    tests = [str(REPO / "tests" / "policies" / "privacy" / name) for name in PRIVACY_TESTS]
    proc = _wheel_python(site, REPO, "-c", COMPILED_RUN, str(site), ",".join(COMPILED), str(REPO), *tests)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert " passed" in proc.stdout and " failed" not in proc.stdout


# -- the editable checkout ---------------------------------------------------------------------------------

EDITABLE_SNIPPET = textwrap.dedent("""
    import json, sys
    from importlib import metadata

    import gensdk
    from gensdk.plugins import ENTRYPOINT_GROUP

    dist = metadata.distribution("gensdk")
    direct_url = json.loads(dist.read_text("direct_url.json") or "{}")
    loaded = {}
    for ep in dist.entry_points:
        if ep.group == ENTRYPOINT_GROUP:
            try:
                loaded[ep.name] = ep.load().__file__
            except Exception as exc:  # reported by name below, beside the hint about a stale install
                loaded[ep.name] = f"failed to import: {type(exc).__name__}: {exc}"
    import gensdk_privacy.numbers
    print(json.dumps({"editable": bool(direct_url.get("dir_info", {}).get("editable")),
                      "gensdk": gensdk.__file__, "pii_numbers": gensdk_privacy.numbers.__file__, "entry_points": {ep.name: ep.value for ep in dist.entry_points
                      if ep.group == ENTRYPOINT_GROUP}, "files": loaded}))
""")


def test_editable_install_loads_every_entry_point_from_the_checkout(tmp_path: Path) -> None:
    # Run from a scratch directory: from the repository root, importlib.metadata would find the
    # gensdk.egg-info that `pip install -e .` leaves there before the installed dist-info.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = _check(subprocess.run([sys.executable, "-c", EDITABLE_SNIPPET], env=env, cwd=tmp_path,
                                 capture_output=True, text=True, timeout=120))
    out = json.loads(proc.stdout)
    if not out["editable"]:
        pytest.skip("gensdk is not installed in editable mode (pip install -e .) in this environment")
    stale = "the editable install is stale: run `pip install -e .` again"
    assert out["entry_points"] == _declared_entry_points(), stale
    assert Path(out["gensdk"]).resolve().is_relative_to(REPO / "gensdk")
    # setup.py compiles nothing for an editable install: an edit to a detector takes effect at once
    assert out["pii_numbers"].endswith("numbers.py"), out["pii_numbers"]
    folders = [REPO / d for d in PLUGIN_DIRS]
    for name, file in out["files"].items():
        assert not file.startswith("failed"), f"entry point {name!r} {file} ({stale} if it is new)"
        assert any(Path(file).resolve().is_relative_to(f) for f in folders), f"entry point {name!r} loads {file}"
