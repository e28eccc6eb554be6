"""Batched generation: prompts x n, left padding, seeds, sampling options, chat, processors, bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import gensdk_llm.plugin
from gensdk import Policy, PolicyOptions, Verdict, hookimpl
from gensdk.errors import RequestError
from gensdk.testing import ProcessorPolicy, make_engine
from gensdk_llm import LLMFamily

GREEDY = {"temperature": 0, "max_new_tokens": 12}


def test_prompts_times_n_outputs_in_prompt_order(tiny_lm: LLMFamily, engine: Any) -> None:
    result = engine.generate(tiny_lm, prompts=["To be", "First Citizen:", "O"], n=2, seed=4, params={"max_new_tokens": 6})
    assert [o.prompt for o in result.outputs] == ["To be", "To be", "First Citizen:", "First Citizen:", "O", "O"]
    assert all(0 < o.metadata["new_tokens"] <= 6 or o.metadata["finish_reason"] == "eos" for o in result.outputs)


def test_same_seed_same_text_other_seed_other_text(tiny_lm: LLMFamily, engine: Any) -> None:
    request = {"prompts": ["To be", "First Citizen:"], "n": 2, "params": {"max_new_tokens": 16}}
    first = engine.generate(tiny_lm, request, seed=7).texts
    assert engine.generate(tiny_lm, request, seed=7).texts == first
    assert engine.generate(tiny_lm, request, seed=8).texts != first


def test_seeding_leaves_the_callers_rng_alone(tiny_lm: LLMFamily, engine: Any) -> None:
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    engine.generate(tiny_lm, prompts=["To be"], seed=1, params={"max_new_tokens": 4})
    assert torch.equal(torch.rand(3), expected)


def test_left_padding_gives_each_prompt_its_own_greedy_text(tiny_lm: LLMFamily, engine: Any) -> None:
    short, long = "O", "First Citizen: Before we proceed any further, hear me speak."
    batched = engine.generate(tiny_lm, prompts=[short, long], params=GREEDY).texts
    alone = [engine.generate(tiny_lm, prompts=[p], params=GREEDY).texts[0] for p in (short, long)]
    assert batched == alone


def test_micro_batches_split_the_prompts(tiny_lm: LLMFamily, tmp_path: Path) -> None:
    prompts = ["To be", "O", "First Citizen:"]
    with make_engine(tmp_path, plugins=[gensdk_llm.plugin], config={"max_batch_size": 2}) as small:
        split = small.generate(tiny_lm, prompts=prompts, n=2, params=GREEDY)
    with make_engine(tmp_path, plugins=[gensdk_llm.plugin], audit_name="other.db") as whole:
        one = whole.generate(tiny_lm, prompts=prompts, n=2, params=GREEDY)
    assert [o.prompt for o in split.outputs] == [o.prompt for o in one.outputs]
    assert split.texts == one.texts  # greedy: batching must not change the text


def test_split_sizes() -> None:
    from gensdk import Request

    family = LLMFamily()
    subs = family.split(Request(prompts=["a", "b", "c", "d", "e"], n=2), batch_size=4)
    assert [(s.prompts, s.n) for s in subs] == [(["a", "b"], 2), (["c", "d"], 2), (["e"], 2)]
    big = family.split(Request(prompts=["a", "b"], n=5), batch_size=4)
    assert [(s.prompts, s.n) for s in big] == [(["a"], 4), (["a"], 1), (["b"], 4), (["b"], 1)]


def test_max_new_tokens_is_respected(tiny_lm: LLMFamily, engine: Any) -> None:
    result = engine.generate(tiny_lm, prompts=["To be"], n=3, seed=2, params={"max_new_tokens": 3})
    assert all(o.metadata["new_tokens"] <= 3 for o in result.outputs)


def test_stop_string_ends_the_text_before_it(tiny_lm: LLMFamily, engine: Any) -> None:
    params = {**GREEDY, "max_new_tokens": 40}
    full = engine.generate(tiny_lm, prompts=["First Citizen:"], params=params).texts[0]
    stop = full[10:13]
    stopped = engine.generate(tiny_lm, prompts=["First Citizen:"], params={**params, "stop": [stop]}).outputs[0]
    assert stopped.text == full[: full.index(stop)]
    assert stopped.metadata["finish_reason"] == "stop"


def test_sampling_options_change_the_text(tiny_lm: LLMFamily, engine: Any) -> None:
    base = {"prompts": ["To be"], "n": 4, "seed": 5, "params": {"max_new_tokens": 12}}
    plain = engine.generate(tiny_lm, base).texts
    for option in ({"top_k": 1}, {"top_p": 0.05}, {"temperature": 0.05}):
        changed = engine.generate(tiny_lm, {**base, "params": {**base["params"], **option}}).texts
        assert changed != plain, option
    # top_k=1 leaves one candidate per step: every sample is the greedy text
    greedy = engine.generate(tiny_lm, {**base, "params": {"max_new_tokens": 12, "temperature": 0}}).texts
    assert engine.generate(tiny_lm, {**base, "params": {"max_new_tokens": 12, "top_k": 1}}).texts == greedy
    # a greedy tiny model repeats itself; a repetition penalty breaks the loop
    penalised = {"max_new_tokens": 12, "temperature": 0, "repetition_penalty": 5.0}
    assert engine.generate(tiny_lm, {**base, "params": penalised}).texts != greedy


def test_chat_uses_the_chat_template(tiny_lm_dir: Path, engine: Any, model_copy: Any, edit_json: Any) -> None:
    path = model_copy("chat")
    edit_json(path / "tokenizer_config.json",
              chat_template="{% for m in messages %}<{{ m.role }}> {{ m.content }}\n{% endfor %}<assistant>")
    model = engine.load_model(path)
    conversation = [{"role": "user", "content": "Speak, good sir."}]
    result = engine.generate(model, messages=[conversation], seed=1, params={"max_new_tokens": 4})
    assert result.outputs[0].prompt == "<user> Speak, good sir.\n<assistant>"


def test_chat_without_template_uses_a_plain_transcript(tiny_lm: LLMFamily, engine: Any) -> None:
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Speak."}]
    result = engine.generate(tiny_lm, messages=[conversation, conversation], seed=1, params={"max_new_tokens": 4})
    assert result.outputs[0].prompt == "system: Be brief.\nuser: Speak.\nassistant:"
    assert len(result.outputs) == 2


@pytest.mark.parametrize("params, named", [
    ({"temperature": -1}, "temperature"), ({"top_p": 0}, "top_p"), ({"top_p": 1.5}, "top_p"),
    ({"top_k": -1}, "top_k"), ({"repetition_penalty": 0}, "repetition_penalty"),
    ({"max_new_tokens": 0}, "max_new_tokens"), ({"temperature": float("nan")}, "temperature"),
    ({"stop": [""]}, "stop"), ({"beams": 4}, "beams"),
])
def test_invalid_sampling_values_name_the_option(tiny_lm: LLMFamily, engine: Any, params: dict, named: str) -> None:
    with pytest.raises(RequestError, match=named):
        engine.generate(tiny_lm, prompts=["To be"], params=params)


@pytest.mark.parametrize("request_fields, message", [
    ({"prompts": [""]}, "prompt 0 is empty"),
    ({"prompts": ["ok", "   "]}, "prompt 1 is empty"),
    ({}, "needs at least one prompt"),
    ({"prompts": ["bad \udcff bytes"]}, "not valid UTF-8"),
    ({"messages": [[]]}, "conversation 0 has no messages"),
    ({"messages": [[{"role": "user", "text": "hi"}]]}, "exactly 'role' and 'content'"),
    ({"prompts": ["a"], "messages": [[{"role": "user", "content": "b"}]]}, "not both"),
    ({"prompts": ["a"], "conditions": {"x": 1}}, "not conditional"),
])
def test_bad_requests_are_request_errors(tiny_lm: LLMFamily, engine: Any, request_fields: dict, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        engine.generate(tiny_lm, request_fields)


def test_prompt_longer_than_the_context_window(tiny_lm: LLMFamily, engine: Any) -> None:
    with pytest.raises(RequestError, match="context window of 96 tokens"):
        engine.generate(tiny_lm, prompts=["To be or not to be " * 40], params={"max_new_tokens": 8})


# -- generation-time processors from policies -------------------------------------------------------------------

class StopAfter(Policy):
    """Contributes a StoppingCriteria that stops every row after `tokens` new tokens."""

    id = "stop-after"
    version = "1"

    class Options(PolicyOptions):
        tokens: int

    @hookimpl
    def prepare_generation(self, request: Any, context: Any) -> list[Any]:
        import torch
        from transformers import StoppingCriteria

        limit = self.options.tokens

        class Stop(StoppingCriteria):
            start: int | None = None

            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                self.start = self.start or input_ids.shape[1] - 1
                done = input_ids.shape[1] - self.start >= limit
                return torch.full((input_ids.shape[0],), done, dtype=torch.bool)

        return [Stop()]


def test_a_policys_logits_processor_steers_every_row(tiny_lm: LLMFamily, tmp_path: Path, force_text: Any) -> None:
    wanted = " my card is 4111 1111 1111 1111."
    with make_engine(tmp_path, plugins=[gensdk_llm.plugin], policies=[force_text(wanted)]) as engine:
        result = engine.generate(tiny_lm, prompts=["To be", "First Citizen: speak"], n=2, seed=3,
                                 params={"max_new_tokens": 40})
    assert result.verdict is Verdict.PASS
    assert result.texts == [wanted] * 4


def test_a_policys_stopping_criteria_applies(tiny_lm: LLMFamily, tmp_path: Path) -> None:
    with make_engine(tmp_path, plugins=[gensdk_llm.plugin], policies=[StopAfter({"tokens": 3})]) as engine:
        result = engine.generate(tiny_lm, prompts=["To be", "O"], seed=3, params={"max_new_tokens": 30})
    assert result.verdict is Verdict.PASS
    assert all(o.metadata["new_tokens"] <= 3 for o in result.outputs)


def test_a_processor_the_family_cannot_apply_blocks(tiny_lm: LLMFamily, tmp_path: Path) -> None:
    with make_engine(tmp_path, plugins=[gensdk_llm.plugin], policies=[ProcessorPolicy()]) as engine:
        result = engine.generate(tiny_lm, prompts=["To be"], seed=3, params={"max_new_tokens": 4})
    assert result.verdict is Verdict.BLOCK and result.outputs == []
    assert "did not apply processor MarkerProcessor" in result.outcomes[0].error


def test_audit_record_names_the_model(tiny_lm: LLMFamily, engine: Any) -> None:
    result = engine.generate(tiny_lm, prompts=["To be"], seed=1, params={"max_new_tokens": 4})
    body = next(r["body"] for r in engine.audit.records() if r["record_id"] == result.audit_record_id)
    assert body["model"]["family"] == "llm"
    assert body["model"]["weights_digest"] == tiny_lm.weights_digest
    assert body["model"]["hf_config"] == tiny_lm.identity()["hf_config"]
    assert body["outputs"][0]["digest"] == result.outputs[0].digest()

