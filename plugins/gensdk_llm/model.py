"""Local Hugging Face causal language models (GPT-2, Llama, Mistral, Qwen, ...), batched and streamed.

Loading is a security boundary, so it refuses by default what could run code: pickle weights (`*.bin`) unless
`allow_pickle=True`, and code shipped with the model (`auto_map` in config.json or tokenizer_config.json)
unless `trust_remote_code=True`. Both flags, the weights digest and the digest of the HF config are part of
`identity()`, hence of every audit record. The checks themselves are in `loading.py`.

Generation runs `model.generate` with an explicit GenerationConfig built from `LLMParams` (the checkpoint's
own sampling defaults in generation_config.json never change what a request means), prompts left-padded in
one batch, and the policies' `LogitsProcessor` / `StoppingCriteria` appended to HF's own. Seeding: HF
samples from torch's global generator, so each call seeds it under a process-wide lock inside
`torch.random.fork_rng` (the caller's RNG state is restored afterwards). Consequence: generation calls in
one process are serialised, and same seed -> same text holds as long as nothing else in the process draws from
torch's global generator *during* a call (another thread training, say).
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gensdk._canonical import digest_of
from gensdk.errors import GenerationError, ModelLoadError, RequestError
from gensdk.family import ModelFamily, Progress
from gensdk.outputs import Output, TextOutput
from gensdk.request import GenerationContext, Request
from gensdk_llm import loading

if TYPE_CHECKING:
    from gensdk_llm.train import TrainOptions

__all__ = ["METADATA_NAME", "LLMFamily", "LLMParams"]

# gensdk's own notes beside a standard HF directory (training data fingerprint, perplexities, licence). Not
# named gensdk_model.json: the directory stays a plain HF directory, recognised by `LLMFamily.recognizes`.
METADATA_NAME = "gensdk_llm.json"

# Serialises generation: HF draws samples from torch's global RNG, seeded per call (see module docstring).
_GENERATION_LOCK = threading.RLock()
# How long the streaming consumer waits for the next token before deciding the generation thread is stuck.
_STREAM_TOKEN_TIMEOUT_S = 600.0


class LLMParams(BaseModel):
    """Sampling options; temperature 0 is greedy decoding (seed irrelevant)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: int = Field(64, ge=1, le=32_768)
    temperature: float = Field(1.0, ge=0, le=100, allow_inf_nan=False)
    top_p: float = Field(1.0, gt=0, le=1, allow_inf_nan=False)
    top_k: int = Field(0, ge=0)  # 0: no top-k cut-off
    repetition_penalty: float = Field(1.0, gt=0, le=100, allow_inf_nan=False)
    stop: list[str] = Field(default_factory=list, max_length=16)

    @field_validator("stop")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if any(not s for s in value):
            raise ValueError("stop strings must not be empty")
        return value


class LLMFamily(ModelFamily):
    id: ClassVar[str] = "llm"
    version: ClassVar[str] = "1"
    modality: ClassVar[str] = "text"  # type: ignore[assignment]
    can_train: ClassVar[bool] = True
    can_stream: ClassVar[bool] = True
    # Sequences (prompts x n) per micro-batch: left padding wastes compute on short prompts in big batches.
    default_batch_size: ClassVar[int] = 16
    Params: ClassVar[type[BaseModel]] = LLMParams

    def __init__(self, model: Any = None, tokenizer: Any = None, *, train_options: TrainOptions | dict[str, Any] | None = None,
                 metadata: dict[str, Any] | None = None):
        """Wrap an in-memory HF model and tokenizer, or start empty and `fit()` a small GPT-2 on a text."""
        self.train_options = None
        if train_options is not None:
            from gensdk_llm.train import TrainOptions

            self.train_options = TrainOptions.parse(train_options)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.unsafe_load = {"allow_pickle": False, "pickle_weights_loaded": False, "trust_remote_code": False}
        self.model: Any = None
        self.tokenizer: Any = None
        self._hf_config: dict[str, Any] = {}
        self._placement: tuple[str, str] | None = None
        self._decoder_copy: Any = None
        if model is not None:
            self._attach(model, tokenizer)

    def _attach(self, model: Any, tokenizer: Any) -> None:
        if tokenizer is None:
            raise ModelLoadError("an LLM needs its tokenizer beside the model")
        self.model = model.eval()
        self.tokenizer = tokenizer
        # Left padding: every row's last prompt token sits at the same position, where generation starts.
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        self._hf_config = json.loads(model.config.to_json_string(use_diff=False))
        self._placement = None
        self._decoder_copy = None

    # -- capabilities and identity ---------------------------------------------------------------------------

    @classmethod
    def recognizes(cls, path: Path) -> bool:
        config_path = Path(path) / "config.json"
        if not config_path.is_file():
            return False
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            # Unreadable config beside a tokenizer: an LM directory gone bad; claim it so load() names the problem.
            return any((Path(path) / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))
        return isinstance(config, dict) and loading.is_causal_lm(config)

    def identity(self) -> dict[str, Any]:
        ident = super().identity()
        ident.update(
            hf_config=digest_of(self._hf_config) if self._hf_config else None,
            architecture=(self._hf_config.get("architectures") or [None])[0],
            model_type=self._hf_config.get("model_type"),
            unsafe_load=dict(self.unsafe_load),
        )
        return ident

    def config(self) -> dict[str, Any]:
        training = self.metadata.get("training", {})
        return {
            "hf_config": self._hf_config,
            "license": training.get("license"),
            "data_source": training.get("data_source"),
            "training_data_fingerprint": training.get("data_sha256"),
        }

    def training_reference(self) -> dict[str, Any] | None:
        """Where the training text is (path, sha256, the character span trained on), for replay checks."""
        training = self.metadata.get("training")
        if not training:
            return None
        keys = ("data_path", "data_sha256", "train_chars", "heldout_chars")
        return {k: training.get(k) for k in keys}

    def training_text_path(self) -> str | None:
        """The text this model was trained on, for the replay (memorisation) policy; None for other models."""
        return (self.metadata.get("training") or {}).get("data_path")

    @property
    def context_window(self) -> int | None:
        for key in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
            value = self._hf_config.get(key)
            if isinstance(value, int) and value > 0:
                return value
        return None

    # -- requests -------------------------------------------------------------------------------------------

    def validate_request(self, request: Request) -> None:
        super().validate_request(request)
        if self.model is None:
            raise RequestError("this LLM has no weights yet; load a model directory or call fit()")
        if request.prompts is not None and request.messages is not None:
            raise RequestError("give either prompts or messages, not both")
        if not request.prompts and not request.messages:
            raise RequestError("an LLM request needs at least one prompt (prompts=[...]) or conversation (messages=[...])")
        for i, prompt in enumerate(request.prompts or []):
            _check_text(prompt, f"prompt {i}")
        for i, conversation in enumerate(request.messages or []):
            _check_conversation(conversation, i)

    def check_request(self, request: Request) -> BaseModel:
        """Params, prompts, and (by tokenizing them) that every prompt leaves room for max_new_tokens: the
        engine calls this on the whole request, so a prompt that is too long fails before anything runs."""
        params = super().check_request(request)
        prompts, is_chat = self._render_prompts(request)
        self._encode(prompts, params, is_chat)  # type: ignore[arg-type]
        return params

    def split(self, request: Request, batch_size: int) -> list[Request]:
        """Split the prompt list: one micro-batch holds at most `batch_size` sequences (prompts x n)."""
        field = "prompts" if request.prompts else "messages"
        items = list(getattr(request, field) or [])
        if request.n > batch_size:  # one prompt per batch, its n completions split too
            sizes = [batch_size] * (request.n // batch_size) + ([request.n % batch_size] if request.n % batch_size else [])
            return [request.model_copy(update={field: [item], "n": size}) for item in items for size in sizes]
        per_batch = max(1, batch_size // request.n)
        return [request.model_copy(update={field: items[i : i + per_batch]}) for i in range(0, len(items), per_batch)]

    def _generate(self, request: Request, params: Any, context: GenerationContext) -> Sequence[Output]:
        from transformers import LogitsProcessor, StoppingCriteria

        prompts, is_chat = self._render_prompts(request)
        batch = self._encode(prompts, params, is_chat)
        processors = context.take(LogitsProcessor)
        criteria = context.take(StoppingCriteria)
        if params.stop:
            criteria = [*criteria, _criteria().StopStrings(self._decoder, params.stop, batch["input_ids"].shape[1])]
        with _GENERATION_LOCK, _seeded(context):
            model = self._placed(context)
            inputs = {k: v.to(context.device).repeat_interleave(request.n, dim=0) for k, v in batch.items()}
            out = model.generate(**inputs, **self._generation_kwargs(params, processors, criteria))
        new_tokens = out[:, inputs["input_ids"].shape[1] :].cpu()
        outputs = []
        for row, tokens in enumerate(new_tokens):
            text, count, reason = self._decode(tokens, params)
            outputs.append(TextOutput(text, prompt=prompts[row // request.n],
                                      metadata={"new_tokens": count, "finish_reason": reason}))
        return outputs

    def _render_prompts(self, request: Request) -> tuple[list[str], bool]:
        """Plain prompts as they are; conversations through the tokenizer's chat template, or a plain
        'role: content' transcript ending in 'assistant:' when the tokenizer has none."""
        if request.prompts:
            return list(request.prompts), False
        rendered = []
        for conversation in request.messages or []:
            if getattr(self.tokenizer, "chat_template", None):
                try:
                    text = self.tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
                except Exception as exc:  # a Jinja error in the model's own template
                    raise RequestError(f"the model's chat template rejected the conversation: {exc}") from None
            else:
                text = "".join(f"{m['role']}: {m['content']}\n" for m in conversation) + "assistant:"
            rendered.append(text)
        return rendered, bool(getattr(self.tokenizer, "chat_template", None))

    def _encode(self, prompts: list[str], params: LLMParams, is_chat: bool) -> dict[str, Any]:
        """Tokenize with left padding; refuse prompts that leave no room for max_new_tokens."""
        # A chat template writes its own BOS; adding special tokens again would double it.
        # Encoded without padding, then padded in Python: padding=True would switch padding on in the fast
        # tokenizer's shared backend, which a policy or the server encoding in another thread switches off
        # again mid-call (ragged rows, "Unable to create tensor").
        encoded = self.tokenizer(prompts, add_special_tokens=not is_chat)
        batch = self.tokenizer.pad(encoded, padding=True, return_tensors="pt", verbose=False)
        window = self.context_window
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        for i, length in enumerate(lengths):
            if length == 0:
                raise RequestError(f"prompt {i} tokenizes to nothing")
            if window is not None and length + params.max_new_tokens > window:
                raise RequestError(
                    f"prompt {i} is {length} tokens; with max_new_tokens={params.max_new_tokens} it exceeds the "
                    f"model's context window of {window} tokens (shorten it or lower max_new_tokens)"
                )
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def _generation_kwargs(self, params: LLMParams, processors: list[Any], criteria: list[Any]) -> dict[str, Any]:
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        model_gc = self.model.generation_config
        sampling = params.temperature > 0
        config = GenerationConfig(
            max_new_tokens=params.max_new_tokens, num_beams=1, do_sample=sampling,
            # Every sampling field set explicitly, or HF fills it from the checkpoint's generation_config.json.
            # (greedy: HF's neutral defaults, so it does not warn about flags that sampling alone uses)
            temperature=params.temperature if sampling else 1.0, top_p=params.top_p if sampling else 1.0,
            top_k=params.top_k if sampling else 50, repetition_penalty=params.repetition_penalty,
            bos_token_id=model_gc.bos_token_id, eos_token_id=model_gc.eos_token_id,
            pad_token_id=self._pad_id(),
        )
        return {"generation_config": config, "logits_processor": LogitsProcessorList(processors),
                "stopping_criteria": StoppingCriteriaList(criteria)}

    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self._eos_ids()[0] if self._eos_ids() else 0
        return int(pad)

    def _eos_ids(self) -> list[int]:
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return [] if eos is None else [int(e) for e in (eos if isinstance(eos, list) else [eos])]

    def _decode(self, tokens: Any, params: LLMParams) -> tuple[str, int, str]:
        """Text of one row up to its first EOS, cut at the first stop string; (text, tokens, finish reason)."""
        ids = tokens.tolist()
        eos = set(self._eos_ids())
        end = next((i for i, t in enumerate(ids) if t in eos), None)
        reason = "length" if end is None else "eos"
        ids = ids if end is None else ids[:end]
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        cut = _first_stop(text, params.stop)
        if cut is not None:
            text, reason = text[:cut], "stop"
        return text, len(ids), reason

    @property
    def _decoder(self) -> Any:
        """A copy of the tokenizer that only decodes, for the generation thread (streamer, stop strings).

        HF fast tokenizers fail ("Already borrowed") when one thread reconfigures padding (any encode call may)
        while another decodes; while a stream generates, its policies encode with `self.tokenizer` in the
        consumer's thread, so the generation thread must not share it."""
        if self._decoder_copy is None:
            import copy

            self._decoder_copy = copy.deepcopy(self.tokenizer)
        return self._decoder_copy

    def _placed(self, context: GenerationContext) -> Any:
        """The model on the engine's device and dtype (moved once, on first use)."""
        import torch

        wanted = (context.device, context.dtype)
        if self._placement != wanted:
            self.model.to(device=context.device, dtype=getattr(torch, context.dtype))
            self._placement = wanted
        return self.model

    # -- streaming -----------------------------------------------------------------------------------------

    def stream(self, request: Request, context: GenerationContext) -> Iterator[str]:
        """Text chunks of ONE completion as the model writes them (no policy has seen them: use
        `Engine.stream`, which releases them through the policies).

        Every processor is taken and the generation thread started before this returns, so the engine can
        refuse untaken processors before a single chunk exists. Closing the iterator stops the generation.
        """
        params = self.check_request(request)
        prompts, is_chat = self._render_prompts(request)
        if len(prompts) != 1 or request.n != 1:
            raise RequestError("streaming generates one completion: give one prompt (or one conversation) and n=1")
        try:
            return self._start_stream(prompts, is_chat, params, context)
        except (RequestError, GenerationError):
            raise
        except Exception as exc:
            raise GenerationError(f"llm failed to start streaming: {type(exc).__name__}: {exc}") from exc

    def _start_stream(self, prompts: list[str], is_chat: bool, params: LLMParams, context: GenerationContext) -> Iterator[str]:
        from transformers import LogitsProcessor, StoppingCriteria, TextIteratorStreamer

        batch = self._encode(prompts, params, is_chat)
        cancel = threading.Event()
        criteria = [*context.take(StoppingCriteria), _criteria().Cancelled(cancel)]
        if params.stop:
            criteria.append(_criteria().StopStrings(self._decoder, params.stop, batch["input_ids"].shape[1]))
        kwargs = self._generation_kwargs(params, context.take(LogitsProcessor), criteria)
        streamer = TextIteratorStreamer(self._decoder, skip_prompt=True, skip_special_tokens=True,
                                        timeout=_STREAM_TOKEN_TIMEOUT_S)
        failure: dict[str, BaseException] = {}

        def run() -> None:
            import torch

            try:
                with _GENERATION_LOCK, _seeded(context), torch.inference_mode():
                    model = self._placed(context)
                    inputs = {k: v.to(context.device) for k, v in batch.items()}
                    model.generate(**inputs, **kwargs, streamer=streamer)
            except BaseException as exc:  # handed to the consumer, which raises it as a GenerationError
                failure["error"] = exc
                streamer.end()

        thread = threading.Thread(target=run, daemon=True, name="gensdk-llm-stream")
        thread.start()
        return _Chunks(streamer, thread, cancel, failure, params.stop)

    # -- training and persistence ---------------------------------------------------------------------------

    def fit(self, data: Any, progress: Progress | None = None) -> LLMFamily:
        """Train a byte-level BPE tokenizer and a small GPT-2 on a UTF-8 text file (see gensdk_llm.train)."""
        from gensdk_llm.train import TrainOptions, train

        model, tokenizer, training = train(data, TrainOptions.parse(self.train_options), progress)
        self._attach(model, tokenizer)
        self.metadata = {"training": training}
        return self

    def save(self, path: str | Path) -> Path:
        """A standard HF directory (config, safetensors weights, tokenizer) plus gensdk_llm.json."""
        from gensdk import __version__
        from gensdk_llm.train import save_tokenizer

        if self.model is None:
            raise RequestError("nothing to save: this LLM has no weights yet")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with loading.quiet_transformers():
            self.model.save_pretrained(path)
        save_tokenizer(self.tokenizer, path, self.context_window)
        meta = {"family": self.id, "family_version": self.version, "gensdk_version": __version__, **self.metadata}
        (path / METADATA_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
        self.weights_digest = loading.weights_digest(loading.weight_files(path, allow_pickle=False)[0])
        return path

    @classmethod
    def load(cls, path: str | Path, allow_pickle: bool = False, trust_remote_code: bool = False) -> LLMFamily:
        """Load a local HF causal-LM directory; refuses pickle weights and remote code unless allowed."""
        path = Path(path)
        if not path.is_dir():
            raise ModelLoadError(f"model directory {path} does not exist or is not a directory")
        config = loading.read_json(path / "config.json", required=True)
        if not loading.is_causal_lm(config):
            raise ModelLoadError(f"{path / 'config.json'} describes a {config.get('model_type')!r} model, not a causal language model")
        loading.refuse_remote_code(path, config, trust_remote_code)
        files, pickled = loading.weight_files(path, allow_pickle)
        loading.check_safetensors(files)
        model, tokenizer = loading.from_pretrained(path, pickled, trust_remote_code)
        family = cls(model, tokenizer, metadata=loading.read_json(path / METADATA_NAME, required=False))
        family.source_path = path
        family.weights_digest = loading.weights_digest(files)
        family.unsafe_load = {"allow_pickle": allow_pickle, "pickle_weights_loaded": pickled,
                              "trust_remote_code": trust_remote_code}
        return family


# -- stopping criteria ------------------------------------------------------------------------------------------

@functools.cache
def _criteria() -> Any:
    """The two StoppingCriteria gensdk adds itself; built on first use so that importing this module does not
    import transformers (registering the family must stay cheap)."""
    import torch
    from transformers import StoppingCriteria

    class StopStrings(StoppingCriteria):
        """Stops a row once its generated text contains a stop string; decodes only a short tail per step."""

        def __init__(self, tokenizer: Any, stops: list[str], prompt_length: int):
            self.tokenizer, self.stops, self.prompt_length = tokenizer, stops, prompt_length
            # A token decodes to at least one character (a partial UTF-8 byte shows as U+FFFD), so the last
            # 2*len+4 tokens always cover a stop string that just completed.
            self.window = 2 * max(len(s) for s in stops) + 4

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            tails = input_ids[:, self.prompt_length :][:, -self.window :]
            texts = self.tokenizer.batch_decode(tails, skip_special_tokens=True)
            return torch.tensor([any(s in t for s in self.stops) for t in texts], device=input_ids.device)

    class Cancelled(StoppingCriteria):
        """Stops every row once the streaming consumer has gone away."""

        def __init__(self, event: threading.Event):
            self.event = event

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)

    return types.SimpleNamespace(StopStrings=StopStrings, Cancelled=Cancelled)


def _first_stop(text: str, stops: list[str]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else None


class _Chunks:
    """The streamer's text, holding back enough characters that no stop string is ever emitted.

    `close()` cancels the generation (through the `Cancelled` criterion) and waits for its thread, also when
    no chunk was read yet."""

    def __init__(self, streamer: Any, thread: threading.Thread, cancel: threading.Event,
                 failure: dict[str, BaseException], stops: list[str]):
        self.streamer, self.thread, self.cancel, self.failure, self.stops = streamer, thread, cancel, failure, stops
        self._chunks = self._read()

    def __iter__(self) -> _Chunks:
        return self

    def __next__(self) -> str:
        return next(self._chunks)

    def close(self) -> None:
        self.cancel.set()
        self._chunks.close()
        self.thread.join()

    def _read(self) -> Iterator[str]:
        import queue

        hold = max((len(s) for s in self.stops), default=1) - 1
        text, sent = "", 0
        try:
            for chunk in self.streamer:
                text += chunk
                cut = _first_stop(text, self.stops)
                if cut is not None:
                    text = text[:cut]
                    break
                if len(text) - hold > sent:
                    yield text[sent : len(text) - hold]
                    sent = len(text) - hold
        except queue.Empty:
            raise GenerationError(f"llm produced no token for {_STREAM_TOKEN_TIMEOUT_S:g} s while streaming") from None
        finally:
            self.cancel.set()  # stop generating: the consumer left early, or a stop string was found
            self.thread.join()
        if "error" in self.failure:
            exc = self.failure["error"]
            raise GenerationError(f"llm failed while streaming: {type(exc).__name__}: {exc}") from exc
        if len(text) > sent:
            yield text[sent:]


@contextlib.contextmanager
def _seeded(context: GenerationContext) -> Iterator[None]:
    """Seed torch's global RNG for this call and restore the caller's state afterwards."""
    import torch

    devices = [torch.device(context.device).index or 0] if context.device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(context.seed)
        yield


# -- input checks -----------------------------------------------------------------------------------------------

def _check_text(text: Any, what: str) -> None:
    if not isinstance(text, str):
        raise RequestError(f"{what} must be a string")
    if not text.strip():
        raise RequestError(f"{what} is empty")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RequestError(f"{what} is not valid UTF-8 text (undecodable bytes at position {exc.start})") from None


def _check_conversation(conversation: list[dict[str, str]], index: int) -> None:
    if not conversation:
        raise RequestError(f"conversation {index} has no messages")
    for j, message in enumerate(conversation):
        if set(message) != {"role", "content"}:
            raise RequestError(f"message {j} of conversation {index} must have exactly 'role' and 'content'")
        _check_text(message["role"], f"role of message {j} of conversation {index}")
        if not isinstance(message["content"], str):
            raise RequestError(f"content of message {j} of conversation {index} must be a string")
        if message["content"]:
            _check_text(message["content"], f"content of message {j} of conversation {index}")
    if not any(m["content"].strip() for m in conversation):
        raise RequestError(f"conversation {index} is empty")
