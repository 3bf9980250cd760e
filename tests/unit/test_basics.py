"""Durations, retry policies, the error tree, JSON checks, the registry and misuse outside a run."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

from durable_celery import activity, durable_workflow, errors, registry, workflow
from durable_celery.durations import parse_duration
from durable_celery.errors import (
    DuplicateWorkflowError,
    DurableChildError,
    DurableError,
    DurableFatalError,
    DurableInterruptedError,
    DurableInterruption,
    DurableMaxedError,
    DurableProxyError,
    DurableRetryError,
    DurableSleepError,
    DurableTimeoutError,
    DurableWaitForAllError,
    DurableWaitForError,
    InvalidArgumentError,
    NonDeterminismError,
    NotJSONSerializableError,
    UnknownActivityError,
    UnknownWorkflowError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
    did_interrupt,
    error_from_dict,
)
from durable_celery.retry import RetryPolicy
from durable_celery.serialization import ensure_json, json_roundtrip

# -- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("5 minutes", 300.0), ("2h", 7200.0), ("7d", 604800.0), ("250ms", 0.25),
    ("1.5h", 5400.0), ("10", 10.0), (" 3 s ", 3.0), (5, 5.0), (2.5, 2.5), (0, 0.0),
])
def test_parse_duration(text: Any, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "", "5 parsecs", "-3s", -1, True, None, [1],
                                 math.inf, math.nan])
def test_malformed_duration_is_an_invalid_argument(bad: Any) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        parse_duration(bad, what="sleep_for duration")
    assert isinstance(caught.value, ValueError)
    assert repr(bad) in str(caught.value)
    assert "sleep_for duration" in str(caught.value)


@pytest.mark.parametrize("negative", [-5, -0.5, "-3s"])
def test_a_negative_duration_is_called_negative(negative: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="sleep_for duration cannot be negative"):
        parse_duration(negative, what="sleep_for duration")


# -- retry policy ----------------------------------------------------------------------------


def test_retry_policy_defaults() -> None:
    policy = RetryPolicy()
    assert (policy.maximum_attempts, policy.backoff_coefficient, policy.initial_interval,
            policy.maximum_interval, policy.throw_on_error) == (50, 2, "1s", "5m", True)


def test_retry_delay_formula() -> None:
    policy = RetryPolicy()
    assert [policy.delay_before_retry(k) for k in range(1, 12)] == [
        1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    custom = RetryPolicy(backoff_coefficient=3, initial_interval=0.5, maximum_interval="10s")
    assert [custom.delay_before_retry(k) for k in (1, 2, 3, 4)] == [0.5, 1.5, 4.5, 10.0]
    flat = RetryPolicy(backoff_coefficient=1, initial_interval="250ms")
    assert flat.delay_before_retry(40) == 0.25


def test_maximum_attempts_counts_retries() -> None:
    three = RetryPolicy(maximum_attempts=3)
    # After each failed try: may another follow? At most 1 + 3 tries in all.
    assert [three.allows_retry(failed) for failed in (1, 2, 3, 4)] == [True, True, True, False]
    assert RetryPolicy(maximum_attempts=0).allows_retry(1) is False
    assert RetryPolicy().allows_retry(50) is True
    assert RetryPolicy().allows_retry(51) is False


@pytest.mark.parametrize("options", [
    {"maximum_attempts": -1}, {"maximum_attempts": "3"}, {"maximum_attempts": 1.5},
    {"maximum_attempts": True}, {"backoff_coefficient": 0.5}, {"backoff_coefficient": "2"},
    {"initial_interval": "soon"}, {"maximum_interval": -1},
])
def test_invalid_retry_policy_is_rejected(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**options)


def test_retry_policy_round_trips_and_coerces() -> None:
    policy = RetryPolicy(maximum_attempts=3, initial_interval=2, throw_on_error=False)
    assert RetryPolicy.from_dict(policy.to_dict()) == policy
    assert RetryPolicy.from_dict(None) == RetryPolicy()
    assert RetryPolicy.coerce({"maximum_attempts": 1}) == RetryPolicy(maximum_attempts=1)
    assert RetryPolicy.coerce(None) is None
    assert RetryPolicy.coerce(policy) is policy
    with pytest.raises(TypeError):
        RetryPolicy.coerce(3)  # type: ignore[arg-type]


# -- errors ----------------------------------------------------------------------------------

CODES: list[tuple[type[BaseException], int]] = [
    (DurableSleepError, 588), (DurableWaitForAllError, 589), (DurableChildError, 590),
    (DurableProxyError, 591), (DurableWaitForError, 595), (DurableTimeoutError, 596),
    (DurableMaxedError, 597), (DurableFatalError, 598), (DurableRetryError, 599),
    (DurableInterruptedError, 410),
]
CONTROL_FLOW = [DurableSleepError, DurableWaitForAllError, DurableChildError, DurableProxyError,
                DurableWaitForError]


@pytest.mark.parametrize(("cls", "code"), CODES)
def test_error_codes(cls: type[Any], code: int) -> None:
    error = cls("boom")
    assert cls.code == code and error.code == code
    assert error.message == "boom" and str(error) == "boom"


def test_did_interrupt_is_true_for_the_first_nine_classes_only() -> None:
    for cls, _ in CODES[:9]:
        assert did_interrupt(cls("x")), cls
    for other in (DurableInterruptedError("x"), DuplicateWorkflowError("x"),
                  WorkflowNotFoundError("x"), WorkflowNotRunningError("x"),
                  NonDeterminismError("x"), UnknownWorkflowError("x"), DurableError("x"),
                  ValueError("x"), RuntimeError("x"), KeyboardInterrupt()):
        assert not did_interrupt(other), other
    assert workflow.did_interrupt is did_interrupt


@pytest.mark.parametrize("cls", CONTROL_FLOW)
def test_control_flow_errors_are_not_exceptions(cls: type[BaseException]) -> None:
    assert issubclass(cls, DurableInterruption)
    assert issubclass(cls, BaseException)
    assert not issubclass(cls, Exception)


def test_failures_are_exceptions() -> None:
    for cls, _ in CODES[5:]:
        assert issubclass(cls, DurableError) and issubclass(cls, Exception)
    assert issubclass(UnknownWorkflowError, LookupError)
    assert issubclass(NotJSONSerializableError, TypeError)
    assert issubclass(InvalidArgumentError, ValueError)


def _error_classes() -> list[type[DurableError]]:
    return [cls for name in errors.__all__
            if isinstance(cls := getattr(errors, name), type) and issubclass(cls, DurableError)]


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda cls: cls.__name__)
def test_error_from_dict_round_trip(cls: type[DurableError]) -> None:
    original = cls("it broke")
    data = original.to_dict()
    assert data == {"class": cls.__name__, "type": cls.__name__, "message": "it broke",
                    "code": cls.code}
    rebuilt = error_from_dict(data)
    assert type(rebuilt) is cls
    assert (rebuilt.code, rebuilt.message, rebuilt.type) == (original.code, "it broke",
                                                             cls.__name__)


def test_error_from_dict_of_unknown_types() -> None:
    plain = error_from_dict({"type": "KeyError", "message": "'k'", "code": None})
    assert isinstance(plain, DurableFatalError) and plain.message == "'k'"
    by_code = error_from_dict({"type": "Whatever", "message": "m", "code": 597})
    assert type(by_code) is DurableMaxedError


# -- serialization ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [object(), {1, 2}, {"when": math.nan}, b"bytes"])
def test_non_json_is_refused_with_a_type_error(value: Any) -> None:
    with pytest.raises(NotJSONSerializableError) as caught:
        ensure_json(value, where="arguments of workflow 'f'")
    assert isinstance(caught.value, TypeError)
    assert "arguments of workflow 'f'" in str(caught.value)
    with pytest.raises(TypeError):
        json_roundtrip(value, where="payload")


@pytest.mark.parametrize("value", [{1: "a", "1": "b"}, [{"x": {True: 1, "true": 2}}],
                                   {None: 1, "null": 2}])
def test_dict_keys_that_become_one_json_key_are_refused(value: Any) -> None:
    with pytest.raises(NotJSONSerializableError, match="collide as JSON text"):
        json_roundtrip(value, where="arguments of workflow 'f'")
    assert json_roundtrip({1: "a", "2": "b"}, where="x") == {"1": "a", "2": "b"}  # no collision


def test_json_roundtrip_returns_what_storage_gives_back() -> None:
    assert json_roundtrip({"a": (1, 2), "b": None}, where="x") == {"a": [1, 2], "b": None}
    ensure_json({"ok": [1, "two", 3.0, True, None]}, where="x")


# -- registry --------------------------------------------------------------------------------


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """Leave the process-wide registry as it was found."""
    workflows = dict(registry._workflows)
    activities = dict(registry._activities)
    yield
    registry._workflows.clear()
    registry._workflows.update(workflows)
    registry._activities.clear()
    registry._activities.update(activities)


def test_workflow_registration_and_lookup(clean_registry: None) -> None:
    async def unit_flow_one(x: int) -> int:
        return x

    definition = durable_workflow(unit_flow_one)
    assert definition.name == "unit_flow_one" and definition.task_queue is None
    assert registry.find_workflow("unit_flow_one") is definition

    async def other(x: int) -> int:
        return x

    named = durable_workflow(name="unit_flow_named", task_queue="orders")(other)
    assert (named.name, named.task_queue) == ("unit_flow_named", "orders")
    assert named.__name__ == "other"


def test_duplicate_workflow_name_is_rejected(clean_registry: None) -> None:
    async def first() -> None: ...

    async def second() -> None: ...

    durable_workflow(name="unit_dup_flow")(first)
    with pytest.raises(ValueError, match="unit_dup_flow"):
        durable_workflow(name="unit_dup_flow")(second)


def test_durable_workflow_rejects_sync_functions(clean_registry: None) -> None:
    def not_async() -> None: ...

    with pytest.raises(TypeError, match="async def"):
        durable_workflow(not_async)


def test_unknown_workflow_error_lists_registered_names(clean_registry: None) -> None:
    async def unit_known_flow() -> None: ...

    durable_workflow(unit_known_flow)
    with pytest.raises(UnknownWorkflowError) as caught:
        registry.find_workflow("unit_missing_flow")
    assert "unit_missing_flow" in str(caught.value)
    assert "unit_known_flow" in str(caught.value)


def test_activity_registration_and_lookup(clean_registry: None) -> None:
    def unit_greet(name: str) -> str:
        return f"Hello, {name}!"

    decorated = activity(unit_greet)
    assert decorated is unit_greet and unit_greet("x") == "Hello, x!"
    assert registry.find_activity("unit_greet", None).function is unit_greet
    assert registry.find_activity("unit_greet", "any-queue").function is unit_greet

    def charge(order: str) -> str:
        return order

    activity(name="unit_charge", task_queue="payments")(charge)
    found = registry.find_activity("unit_charge", "payments")
    assert (found.name, found.task_queue) == ("unit_charge", "payments")


def test_duplicate_activity_name_is_rejected(clean_registry: None) -> None:
    def one() -> None: ...

    def two() -> None: ...

    registry.register_activity(one, name="unit_dup_act")
    with pytest.raises(ValueError, match="unit_dup_act"):
        registry.register_activity(two, name="unit_dup_act")


def test_unknown_activity_error_lists_registered_names(clean_registry: None) -> None:
    def unit_known_act() -> None: ...

    registry.register_activity(unit_known_act)
    with pytest.raises(UnknownActivityError) as caught:
        registry.find_activity("unit_missing_act", "q")
    assert "unit_missing_act" in str(caught.value)
    assert "unit_known_act" in str(caught.value)


def test_async_activity_is_invoked_to_completion(clean_registry: None) -> None:
    async def unit_async_act(x: int) -> int:
        return x + 1

    definition = registry.register_activity(unit_async_act)
    assert definition.is_async and definition.invoke([1]) == 2


# -- misuse outside a run --------------------------------------------------------------------


def test_activity_get_context_outside_an_activity() -> None:
    with pytest.raises(RuntimeError, match="inside an activity"):
        activity.get_context()


@pytest.mark.parametrize("call", [
    lambda: workflow.random(),
    lambda: workflow.get_context(),
    lambda: workflow.sleep_for("1s"),
    lambda: workflow.wait_for("sig"),
    lambda: workflow.signal("sig", 1),
    lambda: workflow.proxy_activities(),
    lambda: workflow.is_side_effect_allowed("x"),
])
def test_workflow_api_outside_a_workflow(call: Any) -> None:
    with pytest.raises(RuntimeError, match="inside a running workflow"):
        call()


def test_no_span_is_built_while_no_tracer_provider_is_set(monkeypatch: Any) -> None:
    """Without a tracer provider OpenTelemetry drops every span: ``workflow_span`` then asks
    for no tracer at all (building the span cost a tenth of a millisecond per activity)."""
    pytest.importorskip("opentelemetry")
    from opentelemetry import trace

    from durable_celery import telemetry

    asked: list[str] = []
    monkeypatch.setattr(trace, "get_tracer", lambda *a, **k: asked.append("tracer"))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: trace.ProxyTracerProvider())
    with telemetry.workflow_span("activity/x", "ns", "wf", {}):
        pass
    assert asked == []
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: object())  # one was set
    with telemetry.workflow_span("activity/x", "ns", "wf", {}):
        pass
    assert asked == ["tracer"]


def test_a_new_broker_is_a_note_and_a_lost_one_a_warning_naming_what_was_sent(caplog) -> None:
    from durable_celery.store.sweeper import report_broker_loss

    with caplog.at_level("INFO", logger="durable_celery.store.sweeper"):
        report_broker_loss(0)
        report_broker_loss(7)
    (new, lost) = caplog.records
    assert new.levelname == "INFO" and "nothing queued needed sending again" in new.getMessage()
    assert lost.levelname == "WARNING" and "sent 7 queued" in lost.getMessage()


# -- audit: bad input refused with a clear error --------------------------------------------


@pytest.mark.parametrize("value", [10**400, -(10**400), "1" * 400 + "s", "1" * 400 + "d"])
def test_a_duration_too_large_for_a_float_is_an_invalid_argument(value: Any) -> None:
    from durable_celery.durations import parse_timeout

    with pytest.raises(InvalidArgumentError, match="sleep_for duration is out of range"):
        parse_duration(value, what="sleep_for duration")
    with pytest.raises(InvalidArgumentError, match="execution_timeout"):
        parse_timeout(value, what="execution_timeout")


def test_a_schedule_interval_too_large_for_a_float_is_an_invalid_argument() -> None:
    from durable_celery.schedules import ScheduleTiming, parse_catchup_window

    with pytest.raises(InvalidArgumentError, match="catchup_window"):
        parse_catchup_window(10**400)
    with pytest.raises(InvalidArgumentError, match="every="):
        ScheduleTiming.parse(every=10**400)


@pytest.mark.parametrize("n", [math.nan, math.inf, -math.inf])
def test_search_incr_and_mult_refuse_a_number_that_is_not_finite_at_the_call(n: float) -> None:
    from durable_celery.workflow.data import Search

    for call in (Search().incr, Search().mult):
        with pytest.raises(InvalidArgumentError, match="needs a finite number"):
            call("total", n)


def test_entity_paths_with_a_nul_character_are_refused_at_the_call() -> None:
    from durable_celery.workflow.data import Entity

    entity = Entity()
    for call in (lambda: entity.increment("a\x00b", 1), lambda: entity.toggle("a\x00b"),
                 lambda: entity.get("a\x00b"), lambda: entity.prepend("a\x00b", 1),
                 lambda: entity.append("a\x00b", 1), lambda: entity.delete("a\x00b")):
        with pytest.raises(InvalidArgumentError, match="entity path must not contain a NUL"):
            call()


def test_search_set_with_one_argument_that_is_not_a_dict_says_what_it_got() -> None:
    from durable_celery.workflow.data import Search

    with pytest.raises(InvalidArgumentError, match=r"takes a dict.*\['a', 1\]"):
        Search().set(["a", 1])


@pytest.mark.parametrize("seconds", [10**400, -(10**400), math.nan, math.inf, -1, True, "5"])
def test_a_timer_length_no_timer_can_wait_is_an_invalid_argument(seconds: Any) -> None:
    from durable_celery.engine.context import check_timer_seconds

    with pytest.raises(InvalidArgumentError, match="sleep_for duration must be a finite number"):
        check_timer_seconds(seconds, "sleep_for")
    assert check_timer_seconds(10**3, "sleep_for") == 1000.0


def test_starting_a_definition_with_an_unknown_option_names_it_and_the_options() -> None:
    @durable_workflow(name="unit_option_check")
    async def unit_option_check(name: str) -> str:
        return name

    try:
        with pytest.raises(TypeError, match=r"unit_option_check.start\(\) got unknown option\(s\) "
                                            r"'nam'.*positional.*workflow_id, task_queue"):
            unit_option_check.start(nam="a")
    finally:
        registry._workflows.pop("unit_option_check", None)
