"""Fixtures of the watermark tests: keys, a tiny random language model with a word-level tokenizer (built
here in a second, nothing downloaded), small crops of real photographs, an image family double, and a small
GMM on UCI Adult.

Until the `watermark` / `provenance` entry points are in pyproject.toml (and the project is reinstalled), the
packages are imported from the source tree; tests always pass the plugins explicitly."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any, ClassVar, Sequence

import pytest

REPO = Path(__file__).resolve().parents[3]
for package, folder in (("gensdk_watermark", "policies"), ("gensdk_provenance", "policies"), ("gensdk_llm", "plugins")):
    if importlib.util.find_spec(package) is None:
        sys.path.insert(0, str(REPO / folder))

from gensdk.family import ModelFamily  # noqa: E402
from gensdk.outputs import ImageOutput, Output  # noqa: E402
from gensdk.request import GenerationContext, Request  # noqa: E402

KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
WORDS = ("the and to of a in that is was he for it with as his on be at by i this had not are but from or have an they "
         "which one you were her all she there would their we him been has when who will more no if out so said what up "
         "its about into than them can only other new some could time these two may then do first any my now such like "
         "our over man me even most made after also did many before must through back years where much your way well "
         "down should because each just those people how too little state good very make world still own see men work "
         "long get here between both life being under never day same another know while last might us great old year off "
         "come since against go came right used take three").split()


@pytest.fixture(scope="session")
def key() -> Any:
    from gensdk_watermark.keys import WatermarkKey

    return WatermarkKey.from_hex(KEY_HEX)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "wm.key"
    path.write_text(KEY_HEX + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def word_tokenizer() -> Any:
    """A word-level tokenizer whose decode -> encode round trip is exact (detection re-tokenizes text)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, **{w: i + 2 for i, w in enumerate(dict.fromkeys(WORDS))}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with single spaces
    # No end-of-text token: the LLM family then never cuts a text short, so texts have the length asked for.
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>")


@pytest.fixture(scope="session")
def tiny_lm(word_tokenizer: Any) -> Any:
    """A random 2-layer GPT-2 (width 32) over the word vocabulary, wrapped in the LLM family."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from gensdk_llm import LLMFamily

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(word_tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=512,
                        bos_token_id=None, eos_token_id=None, pad_token_id=0)
    model = GPT2LMHeadModel(config)
    with torch.no_grad():  # sharpen the random model a little so its text is not uniform noise
        model.lm_head.weight.mul_(4)
    return LLMFamily(model, word_tokenizer)


@pytest.fixture(scope="session")
def photos() -> list[Any]:
    """Four 256 x 256 crops of the two photographs scikit-learn ships, as (3, H, W) float tensors."""
    import numpy as np
    import torch
    from sklearn.datasets import load_sample_images

    crops = []
    for image in load_sample_images().images:
        for y, x in ((0, 0), (150, 300)):
            crops.append(torch.from_numpy(np.ascontiguousarray(image[y:y + 256, x:x + 256]).astype(np.float32) / 255).permute(2, 0, 1).contiguous())
    return crops


class ImageFamily(ModelFamily):
    """An image family double: smooth random colour fields of `size` x `size` pixels, on the engine's device."""

    id: ClassVar[str] = "test-images"
    version: ClassVar[str] = "1"
    modality: ClassVar[str] = "image"  # type: ignore[assignment]
    default_batch_size: ClassVar[int] = 4

    def __init__(self, size: int = 160, license: str = "CC0-1.0", data_source: str = "procedural test fields"):
        self.size, self.license, self.data_source = size, license, data_source

    def _generate(self, request: Request, params: Any, context: GenerationContext) -> Sequence[Output]:
        import torch
        import torch.nn.functional as F

        gen = context.torch_generator()
        coarse = torch.rand(request.n, 3, 12, 12, generator=gen, device=context.device)
        fine = torch.rand(request.n, 3, self.size, self.size, generator=gen, device=context.device) * 0.15
        images = (F.interpolate(coarse, size=(self.size, self.size), mode="bicubic", align_corners=False) * 0.8 + fine).clamp(0, 1)
        return [ImageOutput(img) for img in images]

    def config(self) -> dict[str, Any]:
        return {"size": self.size, "license": self.license, "data_source": self.data_source}

    def save(self, path: Any) -> Path:
        raise NotImplementedError

    @classmethod
    def load(cls, path: Any) -> ImageFamily:
        raise NotImplementedError


@pytest.fixture
def image_family() -> type[ImageFamily]:
    return ImageFamily


@pytest.fixture(scope="session")
def gmm_model(adult_sample: Any) -> Any:
    from gensdk_gmm.model import GMMFamily

    return GMMFamily({"n_components": 3, "max_iter": 20, "seed": 0, "license": "CC BY 4.0",
                      "data_source": "UCI Adult (gensdk.datasets)"}).fit(adult_sample.head(1000))


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Any:
    """One intra-op thread: on two cores shared with other jobs, torch's thread pool spins against itself and
    makes these tiny models ten times slower. Restored after each module."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):  # the same for numpy's BLAS (the GMM's EM)
        yield
    torch.set_num_threads(before)
