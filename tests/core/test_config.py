"""Engine configuration from Python and from gensdk.toml: the same object, and every mistake an error that
names the key or the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from gensdk import Engine, EngineConfig, Verdict, load_config
from gensdk.errors import ConfigError, UnknownComponentError
from gensdk.testing import MockFamily, make_engine
from gensdk.testing import plugin as testing_plugin

TOML = """
device = "cpu"
max_batch_size = 4

[[policies]]
id = "keyword"
on_fail = "warn"
timeout_s = 5
mandatory = false
options = { words = ["secret"] }

[[policies]]
id = "noop"
"""


def engine_from(config: object, tmp_path: Path) -> Engine:
    return Engine(config, plugins=[testing_plugin], load_entrypoints=False, audit=str(tmp_path / "audit.db"))


def test_config_from_a_dict() -> None:
    config = EngineConfig.parse({"device": "cpu", "policies": [{"id": "keyword", "options": {"words": ["a"]}}]})
    assert config.device == "cpu"
    assert config.dtype == "auto"
    assert config.max_batch_size is None
    (policy,) = config.policies
    assert policy.id == "keyword" and policy.options == {"words": ["a"]}
    settings = policy.settings()
    assert (settings.on_fail, settings.on_error, settings.mandatory, settings.timeout_s) == ("block", "block", True, 60.0)


def test_config_from_a_toml_file_equals_the_same_dict(tmp_path: Path) -> None:
    path = tmp_path / "gensdk.toml"
    path.write_text(TOML, encoding="utf-8")
    from_file = load_config(path)
    assert from_file == EngineConfig.parse(str(path)) == EngineConfig.parse(path)
    assert from_file == EngineConfig.parse(
        {
            "device": "cpu",
            "max_batch_size": 4,
            "policies": [
                {"id": "keyword", "on_fail": "warn", "timeout_s": 5, "mandatory": False, "options": {"words": ["secret"]}},
                {"id": "noop"},
            ],
        }
    )


def test_engine_built_from_a_toml_file_applies_it(tmp_path: Path) -> None:
    path = tmp_path / "gensdk.toml"
    path.write_text(TOML, encoding="utf-8")
    engine = engine_from(path, tmp_path)
    assert [p.id for p in engine.policies] == ["keyword", "noop"]
    keyword = engine.policy("keyword")
    assert keyword.options.words == ["secret"]
    assert keyword.settings.on_fail == "warn" and keyword.settings.timeout_s == 5 and not keyword.settings.mandatory
    model = MockFamily().enqueue(*["a secret"] + ["ok"] * 4)
    result = engine.generate(model, n=5, seed=1)
    assert [r.n for r in model.history] == [4, 1]  # max_batch_size
    assert result.verdict is Verdict.WARN and len(result.outputs) == 5


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"devcie": "cpu"}, "devcie"),
        ({"policies": [{"id": "keyword", "on_fial": "warn"}]}, "on_fial"),
        ({"policies": [{"id": "keyword", "option": {}}]}, "option"),
    ],
)
def test_unknown_key_is_a_config_error_naming_it(config: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        EngineConfig.parse(config)


def test_unknown_policy_option_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="wrods"):
        make_engine(tmp_path, config={"policies": [{"id": "keyword", "options": {"wrods": ["a"]}}]})


def test_bad_value_is_a_config_error_naming_the_field() -> None:
    with pytest.raises(ConfigError, match="on_fail"):
        EngineConfig.parse({"policies": [{"id": "keyword", "on_fail": "ignore"}]})
    with pytest.raises(ConfigError, match="max_batch_size"):
        EngineConfig.parse({"max_batch_size": 0})
    with pytest.raises(ConfigError, match="timeout_s"):
        EngineConfig.parse({"policies": [{"id": "keyword", "timeout_s": -1}]})
    with pytest.raises(ConfigError, match="dtype"):
        EngineConfig.parse({"dtype": "float8"})


def test_config_that_is_not_a_mapping_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        EngineConfig.parse(["device", "cpu"])  # type: ignore[arg-type]


def test_unknown_policy_id_suggests_the_closest(tmp_path: Path) -> None:
    with pytest.raises(UnknownComponentError, match="unknown policy 'keywrod'.*did you mean 'keyword'"):
        make_engine(tmp_path, config={"policies": [{"id": "keywrod"}]})


def test_unknown_audit_option_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="audit"):
        make_engine(tmp_path, config={"audit_options": {"checkpoint_evry": 10}})
    with pytest.raises(ConfigError, match="audit"):
        make_engine(tmp_path, config={"audit_options": {"busy_timeout": "soon"}})


def test_settings_that_cannot_be_recorded_are_refused(tmp_path: Path) -> None:
    # An infinite number has no JSON form, so it could not go into the audit record's config digest.
    with pytest.raises(ConfigError, match="timeout_s"):
        make_engine(tmp_path, config={"policies": [{"id": "keyword", "timeout_s": float("inf")}]})
    with pytest.raises(ConfigError, match="seconds"):
        make_engine(tmp_path, config={"policies": [{"id": "slow", "options": {"seconds": float("inf")}}]})


def test_missing_config_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="nope.toml.*does not exist"):
        load_config(missing)
    with pytest.raises(ConfigError, match="nope.toml"):
        engine_from(missing, tmp_path)


def test_bad_toml_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('device = "cpu\n[[policies]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="broken.toml"):
        load_config(path)


def test_unknown_key_in_a_toml_file_names_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "gensdk.toml"
    path.write_text('[[policies]]\nid = "keyword"\nmandatroy = false\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="gensdk.toml.*mandatroy"):
        load_config(path)


def test_unreadable_config_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config("bad\x00name.toml")
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('device = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="latin1.toml"):
        load_config(latin1)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)  # a directory


def test_a_policy_config_digest_follows_replaced_options_and_settings() -> None:
    from gensdk.testing import KeywordPolicy

    policy = KeywordPolicy({"words": ["a"]})
    first = policy.config_digest
    assert policy.config_digest == first == KeywordPolicy({"words": ["a"]}).config_digest
    policy.options = KeywordPolicy.Options(words=["b"])
    assert policy.config_digest == KeywordPolicy({"words": ["b"]}).config_digest != first
    policy.settings = policy.settings.model_copy(update={"on_fail": "warn"})
    assert policy.config_digest == KeywordPolicy({"words": ["b"]}, settings={"on_fail": "warn"}).config_digest
