"""Plugin discovery and start-up: a fresh manager per engine, entry points from a real (fake) distribution on
sys.path, the environment switches, and the start-up errors that name the guilty plugin."""

from __future__ import annotations

import logging
import textwrap
import types
import uuid
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from gensdk import Engine, hookimpl
from gensdk.audit import SQLiteAuditSink
from gensdk.cli.main import build_cli
from gensdk.errors import DuplicateRegistrationError, PluginError, PluginLoadError
from gensdk.plugins import ESSENTIAL_PLUGIN, get_plugin_host
from gensdk.testing import KeywordPolicy, MockFamily, make_engine
from gensdk.testing import plugin as testing_plugin


def fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugins: dict[str, str]) -> dict[str, str]:
    """Install `fake_dist 1.0` on sys.path with one `gensdk` entry point per item of `plugins`
    (entry point name -> module source). Returns entry point name -> module name."""
    site = tmp_path / "site"
    info = site / "fake_dist-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake_dist\nVersion: 1.0\n", encoding="utf-8")
    modules = {}
    lines = ["[gensdk]"]
    for ep_name, source in plugins.items():
        module = f"fake_gensdk_plugin_{uuid.uuid4().hex[:12]}"  # unique: sys.modules outlives the test
        (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        lines.append(f"{ep_name} = {module}")
        modules[ep_name] = module
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    return modules


FAMILY_PLUGIN = """
    import gensdk
    from gensdk.testing import MockFamily

    class FakeFamily(MockFamily):
        id = "fake-family"

    @gensdk.hookimpl
    def register_model_families(register):
        register(FakeFamily)
"""

BROKEN_PLUGIN = """
    import gensdk_no_such_dependency
"""

COMMAND_PLUGIN = """
    import click
    import gensdk

    @click.command("fake-hello")
    def hello():
        click.echo("hello from fake_dist")

    @gensdk.hookimpl
    def register_commands(cli):
        cli.add_command(hello)
"""


def statuses(host: Any) -> dict[str, str]:
    return {info.name: info.status for info in host.plugins}


# -- a fresh manager per engine ------------------------------------------------------------------------------------


def test_each_engine_has_its_own_plugin_manager_and_registries(tmp_path: Path) -> None:
    first = make_engine(tmp_path, policies=[KeywordPolicy()], audit_name="a.db")
    second = make_engine(tmp_path, audit_name="b.db")
    assert first.host.pm is not second.host.pm
    assert first.host.families is not second.host.families
    assert first.host.pm.has_plugin("policy:keyword")
    assert not second.host.pm.has_plugin("policy:keyword")

    extra = types.ModuleType("extra_family_plugin")

    class ExtraFamily(MockFamily):
        id = "extra"

    extra.register_model_families = hookimpl(lambda register: register(ExtraFamily))  # type: ignore[attr-defined]
    third = make_engine(tmp_path, plugins=[extra], audit_name="c.db")
    assert "extra" in third.host.families
    assert "extra" not in first.host.families
    assert "extra" not in make_engine(tmp_path, audit_name="d.db").host.families


def test_misspelled_hook_is_an_error_at_start_up() -> None:
    typo = types.ModuleType("typo_plugin")
    typo.register_modle_families = hookimpl(lambda register: None)  # type: ignore[attr-defined]
    with pytest.raises(PluginError, match="register_modle_families"):
        get_plugin_host([typo], load_entrypoints=False)


def test_hook_with_a_wrong_argument_name_is_an_error_at_start_up() -> None:
    wrong = types.ModuleType("wrong_args_plugin")
    wrong.register_model_families = hookimpl(lambda registrar: None)  # type: ignore[attr-defined]
    with pytest.raises(PluginError, match="wrong_args_plugin"):
        get_plugin_host([wrong], load_entrypoints=False)


def test_duplicate_family_id_names_both_plugins() -> None:
    class One(MockFamily):
        id = "same"

    class Two(MockFamily):
        id = "same"

    first = types.ModuleType("first_plugin")
    first.register_model_families = hookimpl(lambda register: register(One))  # type: ignore[attr-defined]
    second = types.ModuleType("second_plugin")
    second.register_model_families = hookimpl(lambda register: register(Two))  # type: ignore[attr-defined]
    with pytest.raises(DuplicateRegistrationError) as info:
        get_plugin_host([first, second], load_entrypoints=False)
    message = str(info.value)
    assert "'same'" in message and "first_plugin" in message and "second_plugin" in message


def test_duplicate_policy_id_from_two_plugins_is_refused() -> None:
    clash = types.ModuleType("clashing_policies")
    clash.register_policies = hookimpl(lambda register: register(KeywordPolicy))  # type: ignore[attr-defined]
    with pytest.raises(DuplicateRegistrationError, match="keyword.*gensdk.testing.plugin.*clashing_policies"):
        get_plugin_host([testing_plugin, clash], load_entrypoints=False)


def test_same_plugin_passed_twice_is_refused() -> None:
    with pytest.raises(DuplicateRegistrationError, match="gensdk.testing.plugin"):
        get_plugin_host([testing_plugin, testing_plugin], load_entrypoints=False)


def test_registered_component_must_subclass_the_base() -> None:
    bad = types.ModuleType("not_a_family_plugin")
    bad.register_model_families = hookimpl(lambda register: register(dict))  # type: ignore[attr-defined]
    with pytest.raises(PluginError, match="not_a_family_plugin.*ModelFamily"):
        get_plugin_host([bad], load_entrypoints=False)


def test_plugin_can_add_an_audit_sink_for_a_url_scheme(tmp_path: Path) -> None:
    class AltSink(SQLiteAuditSink):
        scheme = "alt"

        def __init__(self, target: str, **options: Any):
            super().__init__(str(target).split("://", 1)[1], **options)

    sinks = types.ModuleType("alt_sink_plugin")

    @hookimpl
    def register_audit_sinks(register: Any) -> None:
        register(AltSink)

    sinks.register_audit_sinks = register_audit_sinks  # type: ignore[attr-defined]
    path = tmp_path / "alt.db"
    engine = Engine(plugins=[testing_plugin, sinks], load_entrypoints=False, audit=f"alt://{path}")
    assert isinstance(engine.audit, AltSink)
    result = engine.generate(MockFamily(), n=1, seed=1)
    engine.close()
    with SQLiteAuditSink(path, create=False) as reader:
        assert [r["record_id"] for r in reader.records()] == [result.audit_record_id]


# -- the essential plugin ---------------------------------------------------------------------------------------


def test_essential_plugin_is_always_there(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENSDK_DISABLE_PLUGINS", ESSENTIAL_PLUGIN)
    monkeypatch.setenv("GENSDK_LOAD_PLUGINS", "")
    host = get_plugin_host()
    assert statuses(host)[ESSENTIAL_PLUGIN] == "essential"
    assert "sqlite" in host.sinks
    assert get_plugin_host(load_entrypoints=False).sinks.get("sqlite") is SQLiteAuditSink


# -- entry points ------------------------------------------------------------------------------------------------


def test_entry_point_plugin_from_an_installed_distribution_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_distribution(tmp_path, monkeypatch, {"fake": FAMILY_PLUGIN})
    host = get_plugin_host()
    assert "fake-family" in host.families
    registration = host.families.registration("fake-family")
    assert registration.plugin == "fake" and registration.distribution == "fake_dist 1.0"
    info = next(i for i in host.plugins if i.name == "fake")
    assert (info.distribution, info.status) == ("fake_dist 1.0", "loaded")
    assert statuses(host)[ESSENTIAL_PLUGIN] == "essential"


def test_engine_uses_entry_point_plugins_unless_told_not_to(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_distribution(tmp_path, monkeypatch, {"fake": FAMILY_PLUGIN})
    assert "fake-family" in Engine(audit=str(tmp_path / "a.db")).host.families
    assert "fake-family" not in make_engine(tmp_path, audit_name="b.db").host.families


def test_broken_entry_point_names_itself_and_its_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    modules = fake_distribution(tmp_path, monkeypatch, {"broken": BROKEN_PLUGIN})
    with pytest.raises(PluginLoadError) as info:
        get_plugin_host()
    message = str(info.value)
    assert "'broken'" in message
    assert modules["broken"] in message
    assert "fake_dist 1.0" in message
    assert "gensdk_no_such_dependency" in message


def test_entry_point_with_a_syntax_error_is_a_plugin_load_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_distribution(tmp_path, monkeypatch, {"garbled": "def register_model_families(register:\n"})
    with pytest.raises(PluginLoadError, match="'garbled'.*fake_dist 1.0.*SyntaxError"):
        get_plugin_host()


def test_load_plugins_allow_list_loads_only_the_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_distribution(tmp_path, monkeypatch, {"only-one": FAMILY_PLUGIN, "broken": BROKEN_PLUGIN})
    monkeypatch.setenv("GENSDK_LOAD_PLUGINS", "only-one")
    host = get_plugin_host()  # the broken one is not imported at all
    status = statuses(host)
    assert status["only-one"] == "loaded"
    assert status["broken"] == "not in GENSDK_LOAD_PLUGINS"
    assert status["gmm"] == "not in GENSDK_LOAD_PLUGINS"
    assert "fake-family" in host.families and "gmm" not in host.families


def test_empty_load_plugins_loads_no_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_distribution(tmp_path, monkeypatch, {"fake": FAMILY_PLUGIN})
    monkeypatch.setenv("GENSDK_LOAD_PLUGINS", "")
    host = get_plugin_host()
    assert len(host.families) == 0
    assert [i.name for i in host.plugins if i.status == "loaded"] == []


def test_disable_plugins_skips_the_plugin_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake_distribution(tmp_path, monkeypatch, {"fake": FAMILY_PLUGIN, "broken": BROKEN_PLUGIN})
    monkeypatch.setenv("GENSDK_DISABLE_PLUGINS", "broken, fake")
    caplog.set_level(logging.WARNING, logger="gensdk.plugins")
    host = get_plugin_host()  # the broken one is never imported
    status = statuses(host)
    assert status["broken"] == "disabled" and status["fake"] == "disabled"
    assert "fake-family" not in host.families
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'broken'" in w and "fake_dist 1.0" in w and "GENSDK_DISABLE_PLUGINS" in w for w in warnings)


def test_trace_plugins_logs_every_hook_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    trace = logging.getLogger("gensdk.plugins.trace")
    monkeypatch.setattr(trace, "handlers", [])  # restored afterwards: no handler leaks into other tests
    level = trace.level
    try:
        monkeypatch.setenv("GENSDK_TRACE_PLUGINS", "1")
        caplog.set_level(logging.DEBUG, logger="gensdk.plugins.trace")
        engine = make_engine(tmp_path, policies=[KeywordPolicy({"words": ["x"]})])
        engine.generate(MockFamily(), n=1, seed=1)
    finally:
        trace.setLevel(level)
    lines = [r.getMessage() for r in caplog.records if r.name == "gensdk.plugins.trace"]
    assert any(line.startswith("register_model_families -> ") and "gensdk.testing.plugin" in line for line in lines)
    assert "inspect_output -> ['policy:keyword']" in lines
    assert "inspect_output <- ok" in lines


def test_no_trace_without_the_switch(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gensdk.plugins.trace")
    make_engine(tmp_path).generate(MockFamily(), n=1, seed=1)
    assert [r for r in caplog.records if r.name == "gensdk.plugins.trace"] == []


def test_plugin_adds_a_cli_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_distribution(tmp_path, monkeypatch, {"cmd": COMMAND_PLUGIN})
    monkeypatch.setenv("GENSDK_LOAD_PLUGINS", "cmd")
    cli = build_cli()
    assert isinstance(cli.commands.get("fake-hello"), click.Command)
    result = CliRunner().invoke(cli, ["fake-hello"])
    assert result.exit_code == 0, result.output
    assert "hello from fake_dist" in result.output
    assert "fake-hello" not in build_cli(load_entrypoints=False).commands


def test_every_installed_entry_point_loads() -> None:
    host = get_plugin_host()
    loaded = {i.name: i for i in host.plugins if i.status == "loaded"}
    assert "gmm" in loaded
    assert loaded["gmm"].distribution.startswith("gensdk ")
    assert "gmm" in host.families
