"""Memorisation of training images: the image reference (encoding, persistence), the image families keeping one,
and the policy's block / drop / replace paths through the engine on a small VAE trained on the bundled digits."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from gensdk import Verdict
from gensdk.errors import DataError, ModelLoadError
from gensdk.images import ImageData, load_digits, split_holdout_images
from gensdk.reference import IMAGE_SIDE, REFERENCE_META, REFERENCE_NAME, ImageReference, TrainingReference
from gensdk.testing import make_engine

# Small enough to train in a few seconds on one busy core; on the full digits, 5% (90 images) are held out.
TINY_VAE = dict(epochs=8, batch_size=64, latent_dim=8, width=8, learning_rate=3e-3, diagnostic_samples=0, seed=0)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits() -> ImageData:
    return load_digits()


@pytest.fixture(scope="module")
def vae(digits):
    from gensdk_vae import ImageVAEFamily

    return ImageVAEFamily(TINY_VAE).fit(digits)


@pytest.fixture(scope="module")
def trained_on(digits) -> ImageData:
    """The images the VAE trained on (the same seeded split the family made)."""
    return split_holdout_images(digits, 0.05, 0)[0]


@pytest.fixture
def plugins():
    import gensdk_privacy.plugin
    import gensdk_vae.plugin

    return [gensdk_privacy.plugin, gensdk_vae.plugin]


def engine_with(tmp_path: Path, plugins, **options):
    return make_engine(tmp_path, plugins=plugins, config={"policies": [{"id": "memorisation", "options": options}]})


def copy_family(training: ImageData, reference, noise: float = 0.01, copy_share: float = 1.0, fallback=None):
    """An image 'generator' that returns training images plus `noise` x N(0, 1) per pixel: a memorising model.
    With copy_share < 1 the other images, and every image of later calls (replacement rounds), come from
    `fallback` (a real model)."""
    import torch

    from gensdk.outputs import ImageOutput
    from gensdk.testing import InMemoryFamily

    class CopyImages(InMemoryFamily):
        id = "copy-images"
        modality = "image"
        conditional = True  # takes (and ignores) a class, so the policy asks replacements for the copied class
        default_batch_size = 10_000  # one micro-batch per request

        def __init__(self):
            super().__init__(reference)
            self.calls = 0

        def _generate(self, request, params, context):
            self.calls += 1
            gen = torch.Generator().manual_seed(context.seed)
            copies = request.n if fallback is None else (round(request.n * copy_share) if self.calls == 1 else 0)
            picked = torch.randint(0, len(training.pixels), (copies,), generator=gen)
            pixels = (training.pixels[picked] + noise * torch.randn(copies, *training.pixels.shape[1:], generator=gen)).clamp(0, 1)
            outputs = [ImageOutput(p, metadata={"class": training.classes[int(training.labels[i])]}) for p, i in zip(pixels, picked)]
            if copies < request.n:
                sub = request.model_copy(update={"n": request.n - copies})
                outputs += fallback.generate(sub, dataclasses.replace(context, request=sub))
            return outputs

    return CopyImages()


def flagged_count(reference, pixels, quantile: float = 0.05) -> int:
    threshold = reference.holdout_quantile(quantile)
    encoded = reference.encode(pixels)
    dcr = reference.distances_to_closest(encoded, cap=max(threshold, 1e-2))
    return int(((dcr < threshold) | reference.exact_copies(encoded, dcr)).sum())


# -- the reference --------------------------------------------------------------------------------------------


def test_image_reference_round_trips_through_a_directory(digits, tmp_path) -> None:
    ref = ImageReference.build_images(digits.pixels[100:], digits.pixels[:100])
    assert ref.training.shape == (len(digits.pixels) - 100, 64) and ref.training.dtype == np.float32
    ref.save(tmp_path)
    loaded = TrainingReference.load(tmp_path)
    assert isinstance(loaded, ImageReference) and loaded.shape == (1, 8, 8)
    np.testing.assert_array_equal(loaded.training, ref.training)
    np.testing.assert_array_equal(loaded.holdout_dcr, ref.holdout_dcr)
    assert loaded.holdout_quantile(0.05) == ref.holdout_quantile(0.05) > 0
    meta = json.loads((tmp_path / REFERENCE_META).read_text())
    (tmp_path / REFERENCE_META).write_text(json.dumps({**meta, "shape": [1, 4, 4]}))
    with pytest.raises(ModelLoadError, match="image shape"):
        TrainingReference.load(tmp_path)


def test_distances_and_exact_copies_match_a_brute_force_search(digits) -> None:
    ref = ImageReference.build_images(digits.pixels[100:], digits.pixels[:100])
    queries = np.concatenate([ref.encode(digits.pixels[:50]), ref.encode(digits.pixels[300:330])])
    train = ref.training.astype(np.float64)
    expected = np.array([np.sqrt(((train - q) ** 2).sum(axis=1)).min() for q in queries.astype(np.float64)])
    dcr = ref.distances_to_closest(queries)
    np.testing.assert_allclose(dcr, expected, atol=2e-3)
    assert ref.exact_copies(queries, dcr).tolist() == [False] * 50 + [True] * 30


def test_large_images_are_area_averaged_to_a_small_fixed_size() -> None:
    import torch

    gen = torch.Generator().manual_seed(0)
    big = torch.rand(60, 3, 40, 48, generator=gen)
    ref = ImageReference.build_images(big[:50], big[50:])
    assert ref.shape == (3, IMAGE_SIDE, IMAGE_SIDE) and ref.width == 3 * IMAGE_SIDE**2
    copies = ref.encode(list(big[:5]))  # a list of (C, H, W) images, as the policy passes them
    assert ref.exact_copies(copies, ref.distances_to_closest(copies)).all()
    with pytest.raises(DataError, match="3 channel"):
        ref.encode(torch.rand(2, 1, 40, 48))


# -- the image families keep one ------------------------------------------------------------------------------


def test_trained_vae_keeps_a_reference_that_survives_save_and_load(vae, digits, tmp_path) -> None:
    ref = vae.training_reference()
    assert isinstance(ref, ImageReference)
    assert len(ref.holdout) == 90 and len(ref.training) == len(digits.pixels) - 90
    assert vae.metadata["holdout_images"] == 90 and vae.metadata["training_images"] == len(digits.pixels) - 90
    loaded = type(vae).load(vae.save(tmp_path / "vae"))
    np.testing.assert_array_equal(loaded.training_reference().holdout, ref.holdout)


def test_the_split_is_seeded_and_held_out_images_are_no_training_images(digits) -> None:
    train, held = split_holdout_images(digits, 0.05, 0)
    assert len(held.pixels) == 90 and len(train.pixels) + 90 == len(digits.pixels)
    assert (split_holdout_images(digits, 0.05, 0)[1].pixels == held.pixels).all()
    assert not (split_holdout_images(digits, 0.05, 1)[1].pixels == held.pixels).all()
    ref = ImageReference.build_images(train.pixels, held.pixels)
    assert not ref.exact_copies(ref.holdout, ref.distances_to_closest(ref.holdout)).any()


def test_too_few_images_keep_no_reference(digits, tmp_path) -> None:
    from gensdk_gan import ImageGANFamily

    small = ImageData(digits.pixels[:300], digits.labels[:300], digits.classes)  # 15 held out < 50
    model = ImageGANFamily({"epochs": 1, "batch_size": 64, "noise_dim": 8, "width": 8, "diagnostic_samples": 0}).fit(small)
    assert model.training_reference() is None and model.metadata["holdout_images"] == 0
    model.save(tmp_path / "gan")
    assert not (tmp_path / "gan" / REFERENCE_NAME).exists()


# -- the policy through the engine ----------------------------------------------------------------------------


def test_copying_generator_is_blocked(tmp_path, plugins, vae, trained_on) -> None:
    family = copy_family(trained_on, vae.training_reference(), noise=0.01)
    with engine_with(tmp_path, plugins, action="block") as engine:
        result = engine.generate(family, n=300, seed=1)
    assert result.verdict is Verdict.BLOCK and result.outputs == []
    details = result.findings[0].details
    assert details["images"] == 300 and details["flagged"] >= 297 and details["exact_copies"] == 0
    assert "pixels" not in details and isinstance(details["dcr"], float)


def test_systematic_copying_is_blocked_even_when_replacing(tmp_path, plugins, vae, trained_on) -> None:
    family = copy_family(trained_on, vae.training_reference(), noise=0.0)
    with engine_with(tmp_path, plugins, action="replace") as engine:
        result = engine.generate(family, n=100, seed=1)
    assert result.verdict is Verdict.BLOCK and result.outputs == [] and family.calls == 1
    assert "max_flagged_fraction" in result.findings[0].message
    assert result.findings[0].details["exact_copies"] == 100


def test_trained_model_images_mostly_pass(tmp_path, plugins, vae) -> None:
    with engine_with(tmp_path, plugins, action="drop") as engine:
        result = engine.generate(vae, n=300, seed=3)
    flagged = [f for f in result.findings if f.details["memorised"]]
    assert len(result.findings) == 300 and len(flagged) <= 30  # fresh images would have 5% flagged
    assert len(result.outputs) == 300 - len(flagged)


def test_drop_withholds_only_the_flagged_images(tmp_path, plugins, vae, trained_on) -> None:
    family = copy_family(trained_on, vae.training_reference(), copy_share=0.2, fallback=vae)
    with engine_with(tmp_path, plugins, action="drop") as engine:
        result = engine.generate(family, n=200, seed=2)
    withheld = [f for f in result.findings if f.violation]
    assert all(f.code == "memorised-image" and f.details["withheld"] for f in withheld)
    assert 40 <= len(withheld) <= 40 + 20  # the 40 copies, and at most a few of the model's own
    assert {f.output_index for f in withheld} >= set(range(40))  # the copies come first
    assert len(result.outputs) == 200 - len(withheld)
    assert flagged_count(vae.training_reference(), [o.pixels for o in result.outputs]) == 0


def test_replace_swaps_flagged_images_for_fresh_checked_samples(tmp_path, plugins, vae, trained_on) -> None:
    def run():
        family = copy_family(trained_on, vae.training_reference(), copy_share=0.2, fallback=vae)
        with engine_with(tmp_path, plugins, action="replace") as engine:
            return family, engine.generate(family, n=200, seed=2)

    family, result = run()
    replaced = [f for f in result.findings if f.code == "memorised-image-replaced"]
    withheld = [f for f in result.findings if f.violation]
    assert len(replaced) >= 38 and len(replaced) + len(withheld) == result.findings[0].details["flagged"]
    assert 1 < family.calls <= 1 + result.findings[0].details["rounds"] * 10  # one call per round and class
    assert len(result.outputs) == 200 - len(withheld)
    assert flagged_count(vae.training_reference(), [o.pixels for o in result.outputs]) == 0
    again = run()[1]
    assert all((a.pixels == b.pixels).all() for a, b in zip(result.outputs, again.outputs))  # seeded from the request


def test_replacement_keeps_the_asked_for_class(tmp_path, plugins, vae, trained_on) -> None:
    only_threes = ImageData(trained_on.pixels[trained_on.labels == 3], trained_on.labels[trained_on.labels == 3], trained_on.classes)
    family = copy_family(only_threes, vae.training_reference(), copy_share=0.1, fallback=vae)
    with engine_with(tmp_path, plugins, action="replace") as engine:
        result = engine.generate(family, n=100, seed=4, conditions={"class": "3"})
    replaced = [f.output_index for f in result.findings if f.code == "memorised-image-replaced"]
    assert replaced and all(result.outputs[i].metadata["class"] == "3" for i in replaced)


def test_model_without_reference_fails_closed(tmp_path, plugins, vae) -> None:
    from gensdk_vae import ImageVAEFamily

    saved = vae.save(tmp_path / "vae")
    (saved / REFERENCE_NAME).unlink()  # a model saved before gensdk kept image references
    model = ImageVAEFamily.load(saved)
    with engine_with(tmp_path, plugins) as engine:
        result = engine.generate(model, n=5, seed=1)
    assert result.verdict is Verdict.BLOCK and result.outputs == []
    assert "without a training reference" in result.outcomes[0].error
    with engine_with(tmp_path, plugins, missing_reference="allow") as engine:
        allowed = engine.generate(model, n=5, seed=1)
    assert allowed.verdict is Verdict.PASS and len(allowed.outputs) == 5
    assert {f.code for f in allowed.findings} == {"memorisation-unchecked"}


# -- the diffusion family keeps one too -----------------------------------------------------------------------


def test_trained_diffusion_model_keeps_a_reference_and_is_checked(digits, tmp_path) -> None:
    import gensdk_diffusion.plugin
    import gensdk_privacy.plugin
    from gensdk_diffusion import DiffusionFamily

    options = dict(size=8, widths=[8, 16], epochs=1, batch_size=256, train_timesteps=20, sample_steps=2, seed=0)
    model = DiffusionFamily(train_options=options).fit(digits)  # holds out 5% by default, as the GAN and VAE do
    ref = model.training_reference()
    assert isinstance(ref, ImageReference) and ref.shape == (1, 8, 8) and len(ref.holdout) == 90
    assert model.metadata["training"]["images"] == len(digits.pixels) - 90 and model.metadata["training"]["holdout_images"] == 90
    train, held = split_holdout_images(digits, 0.05, 0)  # the split the family made
    for images, copied in ((train.pixels[:100], True), (held.pixels, False)):
        encoded = ref.encode(images)  # at the training size (8): pixels as the network saw them
        assert ref.exact_copies(encoded, ref.distances_to_closest(encoded)).all() == copied
    loaded = DiffusionFamily.load(model.save(tmp_path / "ddpm"))
    np.testing.assert_array_equal(loaded.training_reference().training, ref.training)
    with engine_with(tmp_path, [gensdk_privacy.plugin, gensdk_diffusion.plugin], action="drop") as engine:
        result = engine.generate(loaded, n=4, seed=1)
    assert [f.output_index for f in result.findings] == [0, 1, 2, 3]
    assert {f.code for f in result.findings} <= {"memorisation-checked", "memorised-image"}


def test_privacy_report_of_image_models(vae, trained_on) -> None:
    """`gensdk privacy report` on image models: the VAE's images are no closer to its training images than
    held-out ones are, and the membership attack is near chance; a copier's images are all flagged."""
    from gensdk_privacy.report import privacy_report

    report = privacy_report(vae)
    assert report["rows"] == len(vae.training_reference().holdout) == 90
    assert report["synthetic_closer_than_holdout_p05"] < 0.2 and report["exact_copies"] == 0
    assert 0.3 < report["membership_inference"]["auc"] < 0.7
    copier = privacy_report(copy_family(trained_on, vae.training_reference(), noise=0.0))
    assert copier["synthetic_closer_than_holdout_p05"] == 1.0 and copier["exact_copies"] == copier["rows"]
    assert copier["dcr"]["synthetic"]["p50"] < report["dcr"]["synthetic"]["p50"]
