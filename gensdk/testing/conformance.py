"""Conformance kit: the checks every model family must pass, as a pytest class to subclass.

    from gensdk.testing.conformance import FamilyConformance
    import my_family.plugin

    class TestMyFamily(FamilyConformance):
        family = MyFamily
        plugin = my_family.plugin          # the module your `gensdk` entry point names
        request = {"n": 4}                 # a small request the family accepts

        def make_model(self):
            return MyFamily(...).fit(small_data)

The kit builds each family three ways (through the plugin registry, by direct construction, by a save/load
round trip) and checks seeded determinism, policy pass-through and refusal of corrupted directories.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from gensdk._markers import hookimpl
from gensdk.errors import ModelLoadError, RequestError
from gensdk.family import ModelFamily
from gensdk.outputs import MODALITIES
from gensdk.plugins import get_plugin_host
from gensdk.policy import Policy
from gensdk.testing.doubles import RecordingPolicy
from gensdk.testing.helpers import make_engine
from gensdk.verdicts import Finding, Verdict

__all__ = ["FamilyConformance"]


class FamilyConformance:
    family: ClassVar[type[ModelFamily]]
    plugin: ClassVar[Any]
    request: ClassVar[dict[str, Any]] = {"n": 4}

    def make_model(self) -> ModelFamily:
        raise NotImplementedError("return a small ready-to-generate model")

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls) -> ModelFamily:
        return cls().make_model()

    def _engine(self, tmp_path: Path, **kwargs: Any) -> Any:
        return make_engine(tmp_path, plugins=[self.plugin], **kwargs)

    def _digests(self, engine: Any, model: Any, seed: int) -> list[str]:
        result = engine.generate(model, {**self.request, "seed": seed})
        assert result.verdict is Verdict.PASS, result.outcomes
        return [o.digest() for o in result.outputs]

    def test_declares_capabilities(self) -> None:
        fam = self.family
        assert isinstance(fam.id, str) and fam.id
        assert isinstance(fam.version, str) and fam.version
        assert fam.modality in MODALITIES
        assert isinstance(fam.can_train, bool) and isinstance(fam.can_stream, bool)

    def test_registered_through_its_plugin(self) -> None:
        host = get_plugin_host([self.plugin], load_entrypoints=False)
        assert host.families.get(self.family.id) is self.family

    def test_direct_construction_generates(self, model: ModelFamily, tmp_path: Path) -> None:
        with self._engine(tmp_path) as engine:
            result = engine.generate(model, {**self.request, "seed": 1})
        assert result.outputs, "no output released"
        assert all(o.modality == self.family.modality for o in result.outputs)
        assert result.audit_record_id

    def test_same_seed_same_outputs(self, model: ModelFamily, tmp_path: Path) -> None:
        with self._engine(tmp_path) as engine:
            first, again = self._digests(engine, model, 11), self._digests(engine, model, 11)
            other = self._digests(engine, model, 12)
        assert first == again
        assert first != other

    def test_save_load_round_trip(self, model: ModelFamily, tmp_path: Path) -> None:
        saved = model.save(tmp_path / "model")
        with self._engine(tmp_path) as engine:
            loaded = engine.load_model(saved)
            assert type(loaded) is self.family
            assert self._digests(engine, loaded, 5) == self._digests(engine, model, 5)
        assert loaded.identity()["family"] == self.family.id

    def test_every_output_passes_the_policies(self, model: ModelFamily, tmp_path: Path) -> None:
        recorder = RecordingPolicy()
        with self._engine(tmp_path, policies=[recorder]) as engine:
            result = engine.generate(model, {**self.request, "seed": 3})
        assert recorder.seen_digests() == [o.digest() for o in result.outputs]

    def test_blocked_outputs_are_withheld(self, model: ModelFamily, tmp_path: Path) -> None:
        with self._engine(tmp_path, policies=[_BlockAll()]) as engine:
            result = engine.generate(model, {**self.request, "seed": 3})
        assert result.outputs == [] and result.verdict is Verdict.BLOCK

    def test_unknown_param_is_rejected(self, model: ModelFamily, tmp_path: Path) -> None:
        with self._engine(tmp_path) as engine, pytest.raises(RequestError, match="no_such_option"):
            engine.generate(model, {**self.request, "params": {"no_such_option": 1}})

    def test_corrupted_weights_are_refused(self, model: ModelFamily, tmp_path: Path) -> None:
        saved = model.save(tmp_path / "model")
        weights = sorted(saved.rglob("*.safetensors"))
        assert weights, "a family saves safetensors weights"
        for path in weights:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        with self._engine(tmp_path) as engine, pytest.raises(ModelLoadError):
            engine.load_model(saved)


class _BlockAll(Policy):
    id = "conformance-block-all"
    version = "1"

    @hookimpl
    def inspect_output(self, outputs: list[Any], context: Any) -> list[Finding]:
        return [Finding("blocked", "blocks everything", violation=True, output_index=i) for i in range(len(outputs))]
