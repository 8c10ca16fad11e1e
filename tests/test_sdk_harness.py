"""The scenario harness: a crash or hang in an SDK child fails one test, with its output."""

import pytest
from tests.helpers.scenario import run_scenario

SCENARIOS = "tests.scenarios.harness"


def test_scenario_result_comes_back_to_the_test() -> None:
    assert run_scenario(f"{SCENARIOS}:echo", {"a": 1}, [2, "x"]) == [{"a": 1}, [2, "x"]]


def test_a_child_that_aborts_fails_only_its_test() -> None:
    with pytest.raises(pytest.fail.Exception, match="killed by SIGABRT"):
        run_scenario(f"{SCENARIOS}:abort", timeout=20)


def test_a_hanging_scenario_is_cut_off_and_shows_where_it_waited() -> None:
    with pytest.raises(pytest.fail.Exception) as failure:
        run_scenario(f"{SCENARIOS}:hang", timeout=2)
    message = str(failure.value)
    assert "exceeded its 2.0 s limit" in message
    assert "in hang" in message  # the traceback points at the awaiting line
