"""The server under test: real uvicorn on a free loopback port, in a thread, serving models trained here.

* `models`: a tiny GPT-2 (trained in seconds on TinyShakespeare), a GMM on 500 Adult rows, a class-conditional
  image GAN on 300 digits, and a `mock` text model whose outputs are queued (blocking tests). Once per session.
* `long_lm` (an untrained GPT-2 with a 2048-token window and the tiny LM's tokenizer: long streams) and
  `ddpm` (a class-conditional diffusers DDPM pipeline of random weights, 8x8, 4 sampling steps): built in
  about a second each, for the tests that need them.
* `live(**changes)`: a context manager that builds the Service from a config dict and serves it on 127.0.0.1
  with an ephemeral port (`served=` other models); `server` is one shared instance with the default test policies. `LiveServer(config,
  send_buffer=N)` holds at most about N bytes per connection on the server side (kernel and uvicorn), so a
  client that stops reading is felt after kilobytes, not megabytes.
* `KEYS`: API keys made with gensdk's own key maker, by name: `all`, `gen`, `detect`, `slow` (burst 2).
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from gensdk import Policy, PolicyOptions, hookimpl
from gensdk.server.keys import hash_key, new_key

REPO = Path(__file__).resolve().parents[2]
SHAKESPEARE = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"

KEYS = {name: new_key() for name in ("all", "gen", "detect", "slow")}
KEY_ENTRIES = [
    {"name": "all", "hash": hash_key(KEYS["all"]), "scopes": ["generate", "detect", "audit-read"], "rate_per_minute": 60000, "burst": 1000},
    {"name": "gen", "hash": hash_key(KEYS["gen"]), "scopes": ["generate"], "rate_per_minute": 60000, "burst": 1000},
    {"name": "detect", "hash": hash_key(KEYS["detect"]), "scopes": ["detect"], "rate_per_minute": 60000, "burst": 1000},
    {"name": "slow", "hash": hash_key(KEYS["slow"]), "scopes": ["generate"], "rate_per_minute": 1, "burst": 2},
]
# Small enough to train in a few seconds on two busy cores (the LLM tests' settings, fewer steps).
# Barely trained: the server tests need a model that writes varied text, not good text.
TINY_LM = dict(vocab_size=300, n_layer=1, n_embd=32, n_head=2, context=96, batch_size=8, steps=60,
               learning_rate=5e-3, warmup_steps=2, license="public domain", data_source="test text")
TINY_IMAGE_GAN = dict(epochs=1, batch_size=32, noise_dim=8, width=8, diagnostic_samples=0, seed=0)


class HangOnWord(Policy):
    """Hangs in inspect_output on outputs whose prompt holds `word`: a policy stuck on one request only."""

    id = "hang-on-word"
    version = "1"

    class Options(PolicyOptions):
        word: str = "hang"
        seconds: float = 30.0

    @hookimpl
    def inspect_output(self, outputs: list[Any], context: Any) -> None:
        if any(self.options.word in (getattr(o, "prompt", None) or "") for o in outputs):
            time.sleep(self.options.seconds)


class SlowOnce(Policy):
    """Sleeps once in inspect_output, the first time it sees a text of `after_chars` or more: one slow piece
    in the middle of a stream."""

    id = "slow-once"
    version = "1"
    modalities = frozenset({"text"})

    class Options(PolicyOptions):
        after_chars: int
        seconds: float

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.slept = threading.Event()

    @hookimpl
    def inspect_output(self, outputs: list[Any], context: Any) -> None:
        if not self.slept.is_set() and any(len(o.text) >= self.options.after_chars for o in outputs):
            self.slept.set()
            time.sleep(self.options.seconds)


class ForceText(Policy):
    """Makes the model write the given tokens (a logits processor), so a test knows what will be streamed."""

    id = "force-text"
    version = "1"
    modalities = frozenset({"text"})

    class Options(PolicyOptions):
        token_ids: list[int]

    @hookimpl
    def prepare_generation(self, request: Any, context: Any) -> list[Any]:
        import torch
        from transformers import LogitsProcessor

        ids, eos = self.options.token_ids, context.model._eos_ids()[0]

        class Forcing(LogitsProcessor):
            start: int | None = None

            def __call__(self, input_ids: Any, scores: Any) -> Any:
                self.start = self.start or input_ids.shape[1]
                step = input_ids.shape[1] - self.start
                forced = torch.full_like(scores, float("-inf"))
                forced[:, ids[step] if step < len(ids) else eos] = 0.0
                return forced

        return [Forcing()]


class TestPolicies:
    """A plugin registering the test-only policies."""

    @hookimpl
    def register_policies(self, register: Any) -> None:
        register(HangOnWord)
        register(ForceText)
        register(SlowOnce)


def plugins() -> list[Any]:
    import gensdk_diffusion.plugin
    import gensdk_gan.plugin
    import gensdk_gmm.plugin
    import gensdk_llm.plugin
    import gensdk_provenance.plugin
    import gensdk_watermark.plugin

    import gensdk.testing.plugin

    return [gensdk_llm.plugin, gensdk_gmm.plugin, gensdk_gan.plugin, gensdk_diffusion.plugin, gensdk_watermark.plugin,
            gensdk_provenance.plugin, gensdk.testing.plugin, TestPolicies()]


@pytest.fixture(scope="session")
def api_keys() -> dict[str, str]:
    return KEYS


@pytest.fixture(scope="session", autouse=True)
def single_thread() -> Iterator[None]:
    """One torch thread: on two cores shared with other jobs, two threads spin against each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _training_text() -> str:
    if SHAKESPEARE.is_file():
        return SHAKESPEARE.read_text(encoding="utf-8")[:20_000]
    rng = random.Random(0)
    words = "the and to of my thou thee love night day sweet fair good lord what is this that not be".split()
    return "\n".join(f"ROMEO:\n{' '.join(rng.choice(words) for _ in range(9))}.\n" for _ in range(500))


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Model directories, trained once per session."""
    from gensdk_gan import ImageGANFamily
    from gensdk_gmm import GMMFamily
    from gensdk_llm import LLMFamily

    from gensdk.datasets import load_adult
    from gensdk.images import ImageData, load_digits
    from gensdk.testing import MockFamily

    root = tmp_path_factory.mktemp("models")
    text = root / "train.txt"
    text.write_text(_training_text(), encoding="utf-8")
    digits = load_digits()
    return {
        "lm": LLMFamily(train_options=TINY_LM).fit(text).save(root / "lm"),
        "gmm": GMMFamily({"n_components": 2, "max_iter": 5}).fit(load_adult().sample(300, random_state=0)).save(root / "gmm"),
        "gan": ImageGANFamily(TINY_IMAGE_GAN).fit(ImageData(digits.pixels[:128], digits.labels[:128], digits.classes)).save(root / "gan"),
        "mock": MockFamily().enqueue("a forbidden leak", "fine words", "another forbidden leak").save(root / "mock"),
    }


@pytest.fixture(scope="session")
def lm_tokenizer(models: dict[str, Path]) -> Any:
    from gensdk_llm import LLMFamily

    return LLMFamily.load(models["lm"]).tokenizer


@pytest.fixture(scope="session")
def long_lm(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights are enough: the tests that stream long texts force the tokens (ForceText)."""
    import torch
    from gensdk_llm import LLMFamily
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = LLMFamily.load(models["lm"]).tokenizer
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=2048, n_embd=16, n_layer=1, n_head=2,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    return LLMFamily(GPT2LMHeadModel(config), tokenizer).save(tmp_path_factory.mktemp("models") / "long-lm")


@pytest.fixture(scope="session")
def ddpm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """diffusers' own DDPMPipeline (a UNet2DModel of widths 8 and 16 with 10 class embeddings), sampled in 4
    DDIM steps by default (its gensdk manifest), so an image request takes milliseconds."""
    import torch
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
    from gensdk_diffusion import DiffusionFamily

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
                       norm_num_groups=4, num_class_embeds=10, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    pipeline = DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=100))
    metadata = {"sampling": {"scheduler": "ddim", "steps": 4}, "license": "public domain", "data_source": "none (random weights)"}
    return DiffusionFamily(pipeline, metadata=metadata).save(tmp_path_factory.mktemp("models") / "ddpm")


@pytest.fixture(scope="session")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gensdk_watermark.keys import create_key_file

    folder = tmp_path_factory.mktemp("secrets")
    create_key_file(folder / "wm.key")
    return folder


def make_config(tmp: Path, models: dict[str, Path], secrets: Path, *, policies: list[dict[str, Any]] | None = None,
                batching: dict[str, Any] | None = None, **sections: Any) -> dict[str, Any]:
    """A server config dict: the four models, the test keys, and by default the keyword, text watermark and
    provenance policies."""
    if policies is None:
        policies = [
            {"id": "keyword", "options": {"words": ["forbidden"]}},
            {"id": "watermark-text", "options": {"key_file": str(secrets / "wm.key")}},
            {"id": "provenance", "options": {"key_file": str(secrets / "prov.pem"), "create_key": True}},
        ]
    batch = batching or {"max_batch": 8, "wait_ms": 20}
    config = {
        "engine": {"device": "cpu", "audit": str(tmp / "audit.db"), "policies": policies},
        "models": {name: {"path": str(path), "batching": batch} for name, path in models.items()},
        "keys": KEY_ENTRIES,
        "server": {"host": "127.0.0.1", "port": 0, "generation_threads": 8, "max_pending": 64},
    }
    for name, section in sections.items():
        config[name] = {**config.get(name, {}), **section}
    return config


class LiveServer:
    """A Service on uvicorn in a daemon thread; `client(key)` is an httpx client with that key."""

    def __init__(self, config: dict[str, Any], *, send_buffer: int | None = None):
        from gensdk.server import ServerConfig, Service
        from gensdk.server.app import bind, uvicorn_server

        self.service = Service(ServerConfig.parse(config), plugins=plugins(), load_entrypoints=False)
        sock = bind("127.0.0.1", 0)
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn_server(self.service, configure_logging=False)
        if send_buffer is not None:
            # Accepted connections inherit the listening socket's send buffer (fixed: no autotuning);
            # uvicorn stops taking data once its own buffer for a connection is over the limit.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
            self.server.config.http = _small_buffers(send_buffer)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)

    @property
    def audit(self) -> Any:
        return self.service.engine.audit

    def client(self, key: str | None = "all", **kwargs: Any) -> Any:
        import httpx

        headers = {"Authorization": f"Bearer {KEYS[key]}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)

    def record(self, record_id: str) -> dict[str, Any]:
        return next(r for r in self.audit.records() if r["record_id"] == record_id)

    def wait_for_record(self, request_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """The one generation record of `request_id` (`http:<key>:<rid>`), once it is committed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [r for r in self.audit.records() if r["body"].get("request_id") == request_id]
            if found:
                assert len(found) == 1
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no audit record for {request_id} within {timeout:g} s")


def _small_buffers(limit: int) -> type:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class SmallBuffers(HttpToolsProtocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            transport.set_write_buffer_limits(high=limit)

    return SmallBuffers


@pytest.fixture
def live(tmp_path: Path, models: dict[str, Path], secrets_dir: Path) -> Any:
    """`with live(**changes) as srv:` a fresh server on its own audit trail."""

    @contextlib.contextmanager
    def start(*, served: dict[str, Path] | None = None, send_buffer: int | None = None, **changes: Any) -> Iterator[LiveServer]:
        """`served`: the models to serve instead of the four; `send_buffer`: see LiveServer."""
        config = make_config(tmp_path, models if served is None else served, secrets_dir, **changes)
        with LiveServer(config, send_buffer=send_buffer) as srv:
            yield srv

    return start


@pytest.fixture(scope="module")
def live_module(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path], secrets_dir: Path) -> Any:
    """Like `live`, for a server a whole test module shares."""

    @contextlib.contextmanager
    def start(**changes: Any) -> Iterator[LiveServer]:
        with LiveServer(make_config(tmp_path_factory.mktemp("live"), models, secrets_dir, **changes)) as srv:
            yield srv

    return start


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path], secrets_dir: Path) -> Iterator[LiveServer]:
    """One server for the tests that do not need their own configuration."""
    with LiveServer(make_config(tmp_path_factory.mktemp("server"), models, secrets_dir)) as srv:
        yield srv


@pytest.fixture(scope="session")
def parse_sse() -> Any:
    return sse_events


def sse_events(response: Any) -> list[dict[str, str]]:
    """Parse a text/event-stream body as the SSE spec says: fields per line, events end at a blank line,
    lines starting with ':' are comments. Returns [{"event": ..., "data": ...}]."""
    events, data, event = [], [], "message"
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if line == "":
            if data:
                events.append({"event": event, "data": "\n".join(data)})
            data, event = [], "message"
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        events.append({"event": event, "data": "\n".join(data)})
    return events
