"""The fault injector: nothing in the loop without a fault asked for, the signal at the asked step."""

import signal

import pytest

from macl_jax.train import faults


def _step(state, batch, key):
    return state + 1, {}


def test_no_fault_asked_leaves_the_step_function_itself(monkeypatch):
    monkeypatch.delenv(faults.ENV_VAR, raising=False)
    assert faults.inject_faults(_step, first_step=0) is _step
    assert faults.inject_faults(_step, first_step=0, spec="") is _step
    assert faults.inject_faults(_step, first_step=0, spec="sigkill@3:5") is _step  # another process


def test_signal_right_after_the_asked_step_counted_from_the_resumed_one(monkeypatch):
    sent = []
    monkeypatch.setattr(faults.os, "kill", lambda pid, sig: sent.append(sig))
    monkeypatch.setenv(faults.ENV_VAR, "sigterm@13")
    step = faults.inject_faults(_step, first_step=10)
    state = 10
    for _ in range(5):
        state, _ = step(state, None, None)
        assert sent == ([signal.SIGTERM] if state >= 13 else []), state


def test_a_bad_spec_names_the_variable():
    with pytest.raises(ValueError, match="MACL_FAULT_INJECT='kill@3'"):
        faults.inject_faults(_step, first_step=0, spec="kill@3")
