"""Policy calls on the worker thread: time limits, fresh workers after a hang, several calls per hand-off."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from gensdk.policy_worker import PolicyCall, PolicyTimeout, _PolicyWorker, call_with_timeout, run_calls


def test_huge_time_limit_is_effectively_unbounded() -> None:
    # A limit beyond what the platform's clock can represent must not turn into an error.
    assert call_with_timeout(lambda: time.sleep(0.05) or 7, 1e300) == 7
    assert call_with_timeout(lambda: time.sleep(0.05) or 8, None) == 8


def test_after_a_time_out_the_next_call_runs_on_a_fresh_worker() -> None:


    release = threading.Event()
    with pytest.raises(PolicyTimeout):
        call_with_timeout(lambda: release.wait(5), 0.05)
    # The hung worker still holds the first call; the second must not queue behind it.
    started = time.perf_counter()
    assert call_with_timeout(lambda: "next", 2.0) == "next"
    assert time.perf_counter() - started < 1.0
    release.set()


def test_a_hung_policy_in_one_thread_does_not_delay_another_thread() -> None:


    release, results = threading.Event(), {}

    def hung() -> None:
        try:
            call_with_timeout(lambda: release.wait(5), 1.0)
        except PolicyTimeout:
            results["hung"] = "timeout"

    thread = threading.Thread(target=hung)
    thread.start()
    time.sleep(0.05)
    started = time.perf_counter()
    results["other"] = call_with_timeout(lambda: "done", 2.0)
    results["other_s"] = time.perf_counter() - started
    thread.join()
    release.set()
    assert results["other"] == "done" and results["other_s"] < 0.5 and results["hung"] == "timeout"


def test_an_idle_worker_exits_and_the_next_call_starts_another(monkeypatch: pytest.MonkeyPatch) -> None:

    monkeypatch.setattr(_PolicyWorker, "IDLE_EXIT_S", 0.05)
    monkeypatch.setattr(_PolicyWorker, "_local", __import__("threading").local())
    assert call_with_timeout(lambda: 1, 1.0) == 1
    first = _PolicyWorker.for_this_thread()
    deadline = time.perf_counter() + 2
    while first.alive and time.perf_counter() < deadline:
        time.sleep(0.01)
    assert not first.alive
    assert call_with_timeout(lambda: 2, 1.0) == 2
    assert _PolicyWorker.for_this_thread() is not first


def test_a_batch_runs_in_order_on_one_worker_thread() -> None:
    seen: list[tuple[int, int]] = []
    calls = [PolicyCall(lambda i=i: seen.append((i, threading.get_ident())) or i, 5.0) for i in range(4)]
    outcomes = run_calls(calls)
    assert [o.value for o in outcomes] == [0, 1, 2, 3]
    assert [i for i, _ in seen] == [0, 1, 2, 3]
    assert len({ident for _, ident in seen}) == 1 and seen[0][1] != threading.get_ident()
    assert all(o.elapsed_s >= 0 and not o.timed_out for o in outcomes)


def test_a_hung_call_times_out_alone_and_the_rest_run_on_a_fresh_worker() -> None:
    release, threads = threading.Event(), []

    def note(value: str) -> str:
        threads.append(threading.get_ident())
        return value

    def boom() -> None:
        raise ValueError("bad policy")

    calls = [PolicyCall(lambda: note("first"), 5.0), PolicyCall(lambda: release.wait(5), 0.1),
             PolicyCall(boom, 5.0), PolicyCall(lambda: note("last"), 5.0)]
    started = time.perf_counter()
    outcomes = run_calls(calls)
    release.set()
    assert time.perf_counter() - started < 2.0
    assert outcomes[0].value == "first" and outcomes[3].value == "last"
    assert outcomes[1].timed_out and outcomes[1].elapsed_s >= 0.1
    assert isinstance(outcomes[2].error, ValueError) and not outcomes[2].timed_out
    assert threads[0] != threads[1]  # the worker that hung was not handed the calls after it


def test_a_call_without_a_limit_does_not_stop_the_next_call_from_timing_out(monkeypatch: pytest.MonkeyPatch) -> None:
    import gensdk.policy_worker as worker

    monkeypatch.setattr(worker, "NO_LIMIT_POLL_S", 0.02)
    release = threading.Event()
    outcomes = run_calls([PolicyCall(lambda: time.sleep(0.05) or "slow", None), PolicyCall(lambda: release.wait(5), 0.1)])
    release.set()
    assert outcomes[0].value == "slow" and outcomes[1].timed_out


def test_calls_without_limits_run_on_the_calling_thread() -> None:
    outcomes = run_calls([PolicyCall(threading.get_ident, None), PolicyCall(threading.get_ident, None)])
    assert [o.value for o in outcomes] == [threading.get_ident()] * 2


def test_keyboard_interrupt_in_a_policy_reaches_the_caller() -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    (outcome,) = run_calls([PolicyCall(interrupted, 5.0)])
    assert isinstance(outcome.error, KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        call_with_timeout(interrupted, 5.0)


def clean(outcome: Any) -> bool:
    return outcome.error is None and not outcome.timed_out and outcome.value != "dirty"


@pytest.mark.parametrize("limit", [5.0, None], ids=["on-the-worker", "inline"])
def test_calls_after_the_gate_run_only_when_every_earlier_outcome_is_clean(limit: float | None) -> None:
    ran: list[str] = []

    def step(name: str, value: str = "ok") -> PolicyCall:
        return PolicyCall(lambda: ran.append(name) or value, limit)

    assert [o.value for o in run_calls([step("a"), step("b"), step("c")], gate=2, clean=clean)] == ["ok"] * 3
    ran.clear()
    outcomes = run_calls([step("a", "dirty"), step("b"), step("c")], gate=2, clean=clean)
    assert [o.value for o in outcomes] == ["dirty", "ok"] and ran == ["a", "b"]


def test_a_time_out_before_the_gate_runs_the_rest_of_the_checks_but_nothing_after() -> None:
    release, ran = threading.Event(), []
    calls = [PolicyCall(lambda: release.wait(5), 0.05), PolicyCall(lambda: ran.append("check") or "ok", 5.0),
             PolicyCall(lambda: ran.append("prepare") or "ok", 5.0)]
    outcomes = run_calls(calls, gate=2, clean=clean)
    release.set()
    assert outcomes[0].timed_out and outcomes[1].value == "ok" and len(outcomes) == 2
    assert ran == ["check"]
