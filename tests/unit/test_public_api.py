"""The public names are a contract: they change only on purpose, and every module stays small."""

from __future__ import annotations

import ast
import gc
import importlib
from pathlib import Path
from types import ModuleType

import pytest

import durable_celery
import durable_celery.errors
import durable_celery.workflow

PACKAGE_DIR = Path(durable_celery.__file__).resolve().parent
MAX_LINES = 500

ERROR_NAMES = [
    "ArgumentMismatchError",
    "DuplicateWorkflowError",
    "DurableChildError",
    "DurableError",
    "DurableFatalError",
    "DurableInterruptedError",
    "DurableInterruption",
    "DurableMaxedError",
    "DurableProxyError",
    "DurableRetryError",
    "DurableSleepError",
    "DurableTimeoutError",
    "DurableWaitForAllError",
    "DurableWaitForError",
    "InvalidArgumentError",
    "NonDeterminismError",
    "NotJSONSerializableError",
    "OperationError",
    "PayloadConversionError",
    "ScheduleNotFoundError",
    "UnknownActivityError",
    "UnknownWorkflowError",
    "WorkflowNotFoundError",
    "WorkflowNotRunningError",
    "WorkflowSandboxError",
    "did_interrupt",
]

PACKAGE_ALL = sorted([
    *ERROR_NAMES,
    "DurableClient",
    "RetryPolicy",
    "WorkflowHandle",
    "activity",
    "clear_interceptors",
    "durable_workflow",
    "errors",
    "register_activity_interceptor",
    "register_interceptor",
    "workflow",
])

WORKFLOW_ALL = sorted([
    "ActivityProxy",
    "Entity",
    "Search",
    "all",
    "child_result",
    "continue_as_new",
    "deprecate_patch",
    "did_interrupt",
    "emit",
    "enrich",
    "entity",
    "exec_child",
    "exec_hook",
    "exec_hook_batch",
    "execute_child",
    "get_context",
    "hook",
    "interrupt",
    "is_side_effect_allowed",
    "now",
    "patched",
    "proxy_activities",
    "proxy_local_activities",
    "random",
    "search",
    "signal",
    "sleep_for",
    "start_child",
    "trace",
    "uuid4",
    "wait_for",
])

ERRORS_ALL = sorted([*ERROR_NAMES, "CompleteAsyncError", "ContinueAsNewError", "describe_error",
                     "error_from_dict", "safe_str"])

#: Names API.md promises (package level and ``workflow.``). Until one is implemented its pin
#: test is an expected failure naming it; any name outside the pins fails at once.
CONTRACT_PACKAGE = {
    "activity", "durable_workflow", "workflow", "RetryPolicy", "DurableClient", "WorkflowHandle",
    "register_interceptor", "register_activity_interceptor", "clear_interceptors",
    "DurableSleepError", "DurableWaitForAllError", "DurableChildError", "DurableProxyError",
    "DurableWaitForError", "DurableTimeoutError", "DurableMaxedError", "DurableFatalError",
    "DurableRetryError", "DurableInterruptedError", "DuplicateWorkflowError",
    "WorkflowNotFoundError", "NonDeterminismError",
}
CONTRACT_WORKFLOW = {
    "proxy_activities", "sleep_for", "wait_for", "signal", "exec_child", "execute_child",
    "start_child", "hook", "exec_hook", "exec_hook_batch", "search", "entity", "enrich", "emit",
    "trace", "interrupt", "is_side_effect_allowed", "random", "get_context", "did_interrupt",
    "all", "now", "uuid4", "proxy_local_activities", "patched", "deprecate_patch",
    "continue_as_new", "child_result",
}


@pytest.mark.parametrize(("module", "expected"), [
    (durable_celery, PACKAGE_ALL),
    (durable_celery.workflow, WORKFLOW_ALL),
    (durable_celery.errors, ERRORS_ALL),
], ids=["durable_celery", "workflow", "errors"])
def test_public_names_are_pinned(module: ModuleType, expected: list[str]) -> None:
    assert len(set(module.__all__)) == len(module.__all__), "duplicates in __all__"
    for name in module.__all__:
        assert getattr(module, name, None) is not None, f"{module.__name__}.{name} is missing"
    unexpected = sorted(set(module.__all__) - set(expected))
    assert not unexpected, f"{module.__name__}.__all__ has names the pin does not list"
    missing = sorted(set(expected) - set(module.__all__))
    if missing and set(missing) <= CONTRACT_PACKAGE | CONTRACT_WORKFLOW:
        pytest.xfail(f"API.md names not implemented yet in {module.__name__}: {missing}")
    assert sorted(module.__all__) == expected


def test_pins_cover_the_contract_of_api_md() -> None:
    assert CONTRACT_PACKAGE <= set(PACKAGE_ALL)
    assert CONTRACT_WORKFLOW <= set(WORKFLOW_ALL)


def _modules() -> list[Path]:
    return sorted(PACKAGE_DIR.rglob("*.py"))


def _dotted(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _parse(source: str) -> ast.Module:
    """``ast.parse`` with the garbage collector held off. CPython 3.11 keeps the AST
    constructor's recursion depth in interpreter-wide state; a finalizer that parses while it
    runs (formatting a traceback does, for its caret lines) leaves it unbalanced and the parse
    fails with ``SystemError: AST constructor recursion depth mismatch`` (seen in CI)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(source)
    finally:
        if collecting:
            gc.enable()


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE_DIR)))
def test_every_module_is_small_and_declares_all(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    lines = source.count("\n") + 1
    assert lines < MAX_LINES, f"{path.name} has {lines} lines; split it"
    if "migrations" in path.parts or not source.strip():
        return  # generated migrations and empty package markers export nothing
    tree = _parse(source)
    declared = [node for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                and any(isinstance(t, ast.Name) and t.id == "__all__"
                        for t in (node.targets if isinstance(node, ast.Assign)
                                  else [node.target]))]
    assert declared, f"{_dotted(path)} defines no __all__"
    module = importlib.import_module(_dotted(path))
    for name in module.__all__:
        assert hasattr(module, name), f"{_dotted(path)}.__all__ names missing {name!r}"
