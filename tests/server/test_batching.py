"""gensdk.batching: concurrent requests share model calls, each with its own checks, verdicts and record."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from gensdk.batching import Batcher, merge_kind
from gensdk.errors import GenerationError, OutputBlocked
from gensdk.testing import KeywordPolicy, MockFamily, RaisingPolicy, make_engine


def _engine(tmp_path, policies=()):
    import gensdk_diffusion.plugin
    import gensdk_gan.plugin
    import gensdk_llm.plugin

    return make_engine(tmp_path, plugins=[gensdk_llm.plugin, gensdk_gan.plugin, gensdk_diffusion.plugin], policies=list(policies),
                       config={"device": "cpu"})


def _together(fn, args):
    """Call fn(arg) for every arg at once, from as many threads; results in order."""
    start = threading.Barrier(len(args))

    def call(arg):
        start.wait()
        return fn(arg)

    with ThreadPoolExecutor(len(args)) as pool:
        return [f.result() for f in [pool.submit(call, a) for a in args]]


def test_concurrent_text_requests_share_calls_but_keep_their_own_records(tmp_path, models):
    with _engine(tmp_path, [KeywordPolicy({"words": ["forbidden"]})]) as engine:
        batcher = Batcher(engine, engine.load_model(models["lm"]), max_batch=8, wait_s=0.2)
        prompts = ["ROMEO:", "JULIET:", "forbidden", "NURSE:", "LORD:", "FRIAR:"]

        def ask(prompt):
            return batcher.generate(prompts=[prompt], params={"max_new_tokens": 6})

        results = _together(ask, prompts)
        batcher.close()
        records = {r["record_id"]: r["body"] for r in engine.audit.records()}
        assert engine.audit.verify().ok
    assert len({r.audit_record_id for r in results}) == len(prompts)  # one record each
    assert batcher.calls < batcher.batched_requests == len(prompts) - 1  # shared calls; the blocked one never joined
    blocked = results[prompts.index("forbidden")]
    assert blocked.outputs == [] and any(f.code == "keyword-in-prompt" for f in blocked.findings)
    assert "batch" not in records[blocked.audit_record_id]
    calls = {records[r.audit_record_id]["batch"]["call_id"] for r in results if r is not blocked}
    assert len(calls) == batcher.calls
    for prompt, result in zip(prompts, results):
        if result is not blocked:
            assert result.outputs[0].prompt == prompt  # each request got its own slice
            assert records[result.audit_record_id]["outputs"][0]["digest"] == result.outputs[0].digest()


def test_image_requests_merge_by_count(tmp_path, models):
    with _engine(tmp_path) as engine:
        batcher = Batcher(engine, engine.load_model(models["gan"]), max_batch=4, wait_s=0.2)
        results = _together(lambda n: batcher.generate(n=n, conditions={"class": "1"}), [1, 2, 3])
        batcher.close()
    assert [len(r.outputs) for r in results] == [1, 2, 3]
    assert batcher.calls == 1


def test_a_failing_shared_prepare_blocks_every_request_of_the_call(tmp_path, models):
    with _engine(tmp_path, [RaisingPolicy({"hook": "prepare_generation"})]) as engine:
        batcher = Batcher(engine, engine.load_model(models["lm"]), max_batch=4, wait_s=0.2)
        results = _together(lambda p: batcher.generate(prompts=[p], params={"max_new_tokens": 3}), ["A", "B"])
        batcher.close()
    for result in results:
        assert result.outputs == [] and result.outcomes[0].status == "error"
        with pytest.raises(OutputBlocked):
            result.raise_for_verdict()


def test_seeded_requests_run_alone_and_reproduce(tmp_path, models):
    with _engine(tmp_path) as engine:
        batcher = Batcher(engine, engine.load_model(models["lm"]), max_batch=8, wait_s=0.05)
        texts = _together(lambda _: batcher.generate(prompts=["ROMEO:"], seed=5, params={"max_new_tokens": 8}).texts[0], [0, 1])
        batcher.close()
    assert texts[0] == texts[1] and batcher.calls == 0


def test_families_that_cannot_merge_run_through_the_engine(tmp_path):
    with make_engine(tmp_path) as engine:
        model = MockFamily()
        batcher = Batcher(engine, model, max_batch=8)
        assert merge_kind(model) is None
        assert batcher.generate(n=2, seed=1).texts == ["text 1-0", "text 1-1"]
        assert batcher.calls == 0


def test_a_leader_does_not_idle_the_model_while_requests_that_cannot_join_wait(tmp_path, models):
    """Two requests with different sampling settings cannot share a call. The first call's leader would wait up
    to wait_s (its cost is not known yet); once the other request is queued behind it, waiting only delays it."""
    with _engine(tmp_path) as engine:
        batcher = Batcher(engine, engine.load_model(models["lm"]), max_batch=8, wait_s=60.0)
        start = threading.Barrier(2)

        def ask(tokens):
            start.wait()
            return batcher.generate(prompts=["ROMEO:"], params={"max_new_tokens": tokens})

        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(ask, tokens) for tokens in (3, 4)]
            results = [f.result(timeout=20) for f in futures]  # not the 60 s wait for company that cannot come
        batcher.close()
    assert [len(r.outputs) for r in results] == [1, 1] and batcher.calls == 2


@pytest.mark.parametrize("family", ["gan", "ddpm"])
def test_image_requests_for_different_classes_share_one_call_each_with_its_own_class(tmp_path, models, family, request):
    path = models["gan"] if family == "gan" else request.getfixturevalue("ddpm")
    with _engine(tmp_path) as engine:
        model = engine.load_model(path)
        batcher = Batcher(engine, model, max_batch=8, wait_s=0.5)
        asked = [("1", 2), ("2", 1), (None, 3), ("1", 1)]

        def ask(item):
            label, n = item
            return batcher.generate(n=n, conditions={} if label is None else {"class": label})

        results = _together(ask, asked)
        batcher.close()
        records = {r["record_id"]: r["body"] for r in engine.audit.records()}
    assert batcher.calls == 1 and batcher.batched_requests == 4
    for (label, n), result in zip(asked, results):
        assert len(result.outputs) == n
        if label is not None:  # each request's own class (where it asked for none, one drawn from the prior)
            assert [o.metadata.get("class") for o in result.outputs] == [label] * n
    assert len({records[r.audit_record_id]["batch"]["call_id"] for r in results}) == 1  # each record says so
    pixels = [o.pixels for r in results for o in r.outputs]
    assert len({tuple(p.flatten()[:16].tolist()) for p in pixels}) == len(pixels)  # no item copied another


def test_a_family_that_merges_items_but_ignores_their_conditions_fails_the_call(tmp_path, models):
    from gensdk import ImageOutput

    with _engine(tmp_path) as engine:
        model = engine.load_model(models["gan"])

        class Careless(type(model)):  # reads request.conditions (empty in a merged call), not each item's
            def _generate(self, request, params, context):
                label = self.condition_label(request.conditions)
                return [ImageOutput(p) for p in self.sample(request.n, context.seed, label)]

        model.__class__ = Careless
        batcher = Batcher(engine, model, max_batch=8, wait_s=0.5)

        def ask(label):
            try:
                return batcher.generate(n=1, conditions={"class": label})
            except GenerationError as exc:
                return exc

        errors = _together(ask, ["1", "2"])
        batcher.close()
        records = [r["body"] for r in engine.audit.records()]
    # the error comes from a shared call only: they shared it, and neither got an image made for the other's class
    assert all(isinstance(e, GenerationError) and "did not read each item's conditions" in str(e) for e in errors)
    assert len(records) == 2 and all(r["outputs"] == [] and "did not read" in r["error"] for r in records)
