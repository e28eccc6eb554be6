"""Loading local diffusers directories: both pipeline kinds, and every refusal with an error that names the problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

import gensdk_diffusion.plugin
from tiny_diffusion import edit_json, save_pipeline, tiny_sd_pipeline, tiny_unet_pipeline
from gensdk.errors import ModelLoadError
from gensdk.family import MANIFEST_NAME
from gensdk.testing import make_engine
from gensdk_diffusion import DiffusionFamily


def test_engine_recognises_and_loads_both_kinds(engine: Any, unet_dir: Path, sd_dir: Path) -> None:
    unconditional, text = engine.load_model(unet_dir), engine.load_model(sd_dir)
    assert isinstance(unconditional, DiffusionFamily) and unconditional.kind == "unconditional"
    assert isinstance(text, DiffusionFamily) and text.kind == "text-to-image"
    assert DiffusionFamily.recognizes(unet_dir) and not DiffusionFamily.recognizes(unet_dir / "unet")


def test_identity_goes_into_the_audit_record(engine: Any, sd_dir: Path) -> None:
    result = engine.generate(str(sd_dir), prompts=["a red cat"], seed=1, params={"steps": 2})
    record = next(r for r in engine.audit.records() if r["record_id"] == result.audit_record_id)
    model = record["body"]["model"]
    assert model["family"] == "diffusion" and model["pipeline"] == "StableDiffusionPipeline"
    assert len(model["weights_digest"]) == 64 and model["path"] == str(sd_dir)
    assert model["unsafe_load"] == {"allow_pickle": False, "pickle_weights_loaded": False}


def test_weights_digest_changes_with_any_weight_file(model_copy: Callable[[str], Path], sd_model: Any) -> None:
    from safetensors.torch import load_file, save_file

    path = model_copy("sd")
    weights = path / "vae" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(weights))
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1
    save_file(tensors, str(weights))
    assert DiffusionFamily.load(path).weights_digest != sd_model.weights_digest


def test_config_digest_tells_schedulers_apart(model_copy: Callable[[str], Path], unet_model: Any) -> None:
    path = model_copy("unet")
    edit_json(path / "scheduler" / "scheduler_config.json", beta_schedule="squaredcos_cap_v2")
    changed = DiffusionFamily.load(path)
    assert changed.weights_digest == unet_model.weights_digest
    assert changed.identity()["config_digest"] != unet_model.identity()["config_digest"]


def test_identity_is_the_same_in_memory_and_after_a_round_trip(tmp_path: Path) -> None:
    model = DiffusionFamily(tiny_sd_pipeline(tmp_path / "tokenizer"))
    before = model.identity()
    loaded = DiffusionFamily.load(model.save(tmp_path / "sd")).identity()
    assert loaded["config_digest"] == before["config_digest"]
    assert before["weights_digest"] is None and len(loaded["weights_digest"]) == 64


def test_pickle_only_weights_are_refused_unless_allowed(tmp_path: Path) -> None:
    path = save_pipeline(tiny_unet_pipeline(), tmp_path / "pickled", safe_serialization=False)
    assert not list(path.rglob("*.safetensors")) and list(path.rglob("*.bin"))
    with pytest.raises(ModelLoadError, match=r"only pickle weights for unet.*allow_pickle=True"):
        DiffusionFamily.load(path)
    with make_engine(tmp_path, plugins=[gensdk_diffusion.plugin]) as engine:
        model = engine.load_model(path, allow_pickle=True)
        result = engine.generate(model, n=1, seed=1, params={"steps": 2})
    assert result.model["unsafe_load"] == {"allow_pickle": True, "pickle_weights_loaded": True}


def test_custom_pipeline_code_is_refused(model_copy: Callable[[str], Path]) -> None:
    path = model_copy("unet")
    edit_json(path / "model_index.json", _class_name=["my_pipeline", "MyPipeline"])
    (path / "my_pipeline.py").write_text("raise SystemExit('this must never run')\n")
    with pytest.raises(ModelLoadError, match="custom pipeline.*never runs code"):
        DiffusionFamily.load(path)


def test_a_component_from_a_foreign_module_is_refused(model_copy: Callable[[str], Path]) -> None:
    path = model_copy("unet")
    edit_json(path / "model_index.json", unet=["my_unets", "FastUNet"])
    with pytest.raises(ModelLoadError, match=r"unet \(my_unets.FastUNet\).*never runs code"):
        DiffusionFamily.load(path)


def test_auto_map_in_a_component_config_is_refused(model_copy: Callable[[str], Path]) -> None:
    path = model_copy("sd")
    edit_json(path / "text_encoder" / "config.json", auto_map={"AutoModel": "modeling_evil.EvilModel"})
    with pytest.raises(ModelLoadError, match=r"auto_map in text_encoder/config.json"):
        DiffusionFamily.load(path)


def test_trust_remote_code_is_refused_not_ignored(engine: Any, unet_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="never runs code shipped with a model"):
        engine.load_model(unet_dir, trust_remote_code=True)


def test_an_unsupported_pipeline_is_named(model_copy: Callable[[str], Path]) -> None:
    path = model_copy("unet")
    edit_json(path / "model_index.json", _class_name="FluxPipeline")
    with pytest.raises(ModelLoadError, match="'FluxPipeline' pipeline.*DDIMPipeline, DDPMPipeline, StableDiffusionPipeline"):
        DiffusionFamily.load(path)


@pytest.mark.parametrize("component", ["vae", "text_encoder", "tokenizer"])
def test_a_missing_component_is_named(model_copy: Callable[[str], Path], component: str) -> None:
    path = model_copy("sd")
    index = json.loads((path / "model_index.json").read_text())
    del index[component]
    (path / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLoadError, match=f"StableDiffusionPipeline without its {component}"):
        DiffusionFamily.load(path)


def test_a_missing_component_folder_is_named(model_copy: Callable[[str], Path]) -> None:
    path = model_copy("sd")
    shutil.rmtree(path / "vae")
    with pytest.raises(ModelLoadError, match="missing the component folder.*vae"):
        DiffusionFamily.load(path)


def test_a_component_without_weights_is_named(model_copy: Callable[[str], Path]) -> None:
    path = model_copy("sd")
    (path / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="component 'unet' .* has no weights"):
        DiffusionFamily.load(path)


@pytest.mark.parametrize("component", ["unet/diffusion_pytorch_model", "text_encoder/model"])
def test_corrupted_safetensors_is_named(model_copy: Callable[[str], Path], component: str) -> None:
    path = model_copy("sd")
    weights = path / f"{component}.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(ModelLoadError, match=f"weights file .*{component}.safetensors is truncated or corrupted"):
        DiffusionFamily.load(path)


def test_weights_that_do_not_fit_the_config_are_refused(model_copy: Callable[[str], Path]) -> None:
    path = model_copy("unet")
    edit_json(path / "unet" / "config.json", block_out_channels=[8, 32])
    with pytest.raises(ModelLoadError, match=r"cannot load the diffusers pipeline in .*unet"):
        DiffusionFamily.load(path)


def test_components_that_do_not_fit_together_are_named(tmp_path: Path) -> None:
    path = save_pipeline(tiny_sd_pipeline(tmp_path / "tok", text_width=24), tmp_path / "sd")
    with pytest.raises(ModelLoadError, match="text features of width 16 but the text encoder makes 24"):
        DiffusionFamily.load(path)


def test_missing_or_corrupted_model_index(model_copy: Callable[[str], Path], tmp_path: Path) -> None:
    path = model_copy("unet")
    (path / "model_index.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="model_index.json is corrupted"):
        DiffusionFamily.load(path)
    with pytest.raises(ModelLoadError, match="model_index.json is missing"):
        DiffusionFamily.load(tmp_path)
    with pytest.raises(ModelLoadError, match="does not exist"):
        DiffusionFamily.load(tmp_path / "nowhere")


def test_a_gensdk_manifest_of_another_family_is_refused(model_copy: Callable[[str], Path]) -> None:
    path = model_copy("unet")
    (path / MANIFEST_NAME).write_text(json.dumps({"family": "gmm"}))
    with pytest.raises(ModelLoadError, match="holds a 'gmm' model, not a diffusion model"):
        DiffusionFamily.load(path)


def test_an_in_memory_pipeline_of_another_kind_is_refused() -> None:
    from diffusers import DDPMScheduler

    with pytest.raises(ModelLoadError, match="a DDPMScheduler is not a pipeline"):
        DiffusionFamily(DDPMScheduler())


def test_importing_the_plugin_imports_no_heavy_library() -> None:
    import subprocess
    import sys

    code = ("import sys, gensdk, gensdk_diffusion, gensdk_diffusion.plugin; "
            "print([m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
