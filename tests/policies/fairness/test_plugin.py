"""The package as a plugin: found through its entry point, registers its three policies and its command, and
imports no heavy library until a function needs it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gensdk.errors import ConfigError
from gensdk.plugins import get_plugin_host
from gensdk_fairness import ImageWindowPolicy, TextWindowPolicy


def test_entry_point_registers_the_policies_and_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from gensdk.cli.main import build_cli

    monkeypatch.setenv("GENSDK_LOAD_PLUGINS", "fairness")
    host = get_plugin_host()
    assert {"fairness-table", "fairness-text", "fairness-image"} <= {reg.id for reg in host.policies}
    assert host.policies.registration("fairness-table").plugin == "fairness"
    assert "bias" in build_cli().commands["audit"].commands


def test_importing_the_package_imports_no_heavy_library() -> None:
    code = ("import sys, gensdk_fairness, gensdk_fairness.plugin, gensdk_fairness.cli; "
            "heavy = {'torch', 'fairlearn', 'sklearn', 'scipy', 'matplotlib', 'vaderSentiment', 'transformers'}; "
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_misconfigured_policies_fail_at_start_up() -> None:
    with pytest.raises(ConfigError, match="unknown scorer 'vibes'"):
        TextWindowPolicy({"scorers": ["vibes"]})
    with pytest.raises(ConfigError, match="sum to 1"):
        ImageWindowPolicy({"classifier": "digits", "target": {"1": 0.3}})
    with pytest.raises(ConfigError, match="windw"):
        TextWindowPolicy({"windw": 10})
