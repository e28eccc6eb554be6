"""Registries: components are traced to the plugin and distribution that added them; duplicates and typos are
errors that say what to do."""

from __future__ import annotations

import pytest

from gensdk import ModelFamily, Policy
from gensdk.errors import DuplicateRegistrationError, PluginError, UnknownComponentError
from gensdk.registry import Registrar, Registry
from gensdk.testing import KeywordPolicy, MockFamily, NoopPolicy, SlowPolicy


def policy_registry() -> Registry[Policy]:
    return Registry("policy", Policy)


def test_registrar_records_plugin_and_distribution() -> None:
    registry = policy_registry()
    register = Registrar(registry, "my-plugin", "my_dist 2.0")
    assert register(KeywordPolicy) is KeywordPolicy  # usable as a class decorator
    registration = registry.registration("keyword")
    assert (registration.component, registration.plugin, registration.distribution) == (
        KeywordPolicy,
        "my-plugin",
        "my_dist 2.0",
    )
    assert registry.get("keyword") is KeywordPolicy
    assert "keyword" in registry and "noop" not in registry
    assert len(registry) == 1


def test_duplicate_id_names_both_plugins_and_distributions() -> None:
    registry = policy_registry()
    Registrar(registry, "first", "dist_a 1.0")(KeywordPolicy)

    class Impostor(Policy):
        id = "keyword"

    with pytest.raises(DuplicateRegistrationError) as info:
        Registrar(registry, "second", "dist_b 3.1")(Impostor)
    message = str(info.value)
    for part in ("'keyword'", "'first'", "dist_a 1.0", "'second'", "dist_b 3.1"):
        assert part in message
    assert registry.get("keyword") is KeywordPolicy  # the first registration is not replaced


def test_unknown_id_suggests_the_closest_match_and_lists_what_is_installed() -> None:
    registry = policy_registry()
    for cls in (KeywordPolicy, NoopPolicy, SlowPolicy):
        registry.add(cls, "p", "d")
    with pytest.raises(UnknownComponentError, match="did you mean 'keyword'") as info:
        registry.get("keywrod")
    assert "installed: keyword, noop, slow" in str(info.value)
    with pytest.raises(UnknownComponentError) as info:
        registry.get("zzzzzz")
    assert "did you mean" not in str(info.value)


def test_unknown_id_in_an_empty_registry_says_none_installed() -> None:
    with pytest.raises(UnknownComponentError, match="unknown model family 'gmm'.*installed: none"):
        Registry("model family", ModelFamily).get("gmm")


def test_component_of_the_wrong_kind_is_refused() -> None:
    registry = policy_registry()
    with pytest.raises(PluginError, match="'bad-plugin'.*subclass of Policy"):
        registry.add(MockFamily, "bad-plugin", "d")
    with pytest.raises(PluginError, match="subclass of Policy"):
        registry.add(KeywordPolicy(), "bad-plugin", "d")  # an instance, not a class
    assert len(registry) == 0


def test_component_without_an_id_is_refused() -> None:
    class Nameless(Policy):
        pass

    class Empty(Policy):
        id = ""

    registry = policy_registry()
    for cls in (Nameless, Empty):
        with pytest.raises(PluginError, match="has no 'id'"):
            registry.add(cls, "p", "d")


def test_iteration_is_sorted_by_id() -> None:
    registry = policy_registry()
    for cls in (SlowPolicy, KeywordPolicy, NoopPolicy):
        registry.add(cls, "p", "d")
    assert [r.id for r in registry] == ["keyword", "noop", "slow"]


def test_registry_can_key_on_another_attribute() -> None:
    class Sink:
        scheme = "memory"

    registry: Registry[Sink] = Registry("audit sink", Sink, id_attr="scheme")
    registry.add(Sink, "p", "d")
    assert registry.get("memory") is Sink
