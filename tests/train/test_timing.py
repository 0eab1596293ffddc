"""RunTimer: the per-interval `perf/` figures and the `goodput/` summary come from the same totals."""

import pytest

from macl_jax.train.timing import RunTimer


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_interval_and_goodput_from_one_set_of_totals():
    clock = FakeClock()
    timer = RunTimer(clock)
    clock.now += 4.0
    timer.add("init", timer.since(timer.start))
    timer.start_interval(0)
    # Steps 1-10 take 20 s, of which 5 s waiting for data and 3 s saving.
    timer.add("data_wait", 5.0)
    timer.add("checkpoint", 3.0)
    clock.now += 20.0
    first = timer.interval(10)
    assert first == pytest.approx(
        {"perf/step_time_s": 2.0, "perf/data_wait_s": 0.5, "perf/checkpoint_s": 3.0, "perf/steps_per_s": 0.5}
    )
    # Steps 11-20: 10 s, 1 s of data wait, no save; the previous interval is not counted again.
    timer.add("data_wait", 1.0)
    clock.now += 10.0
    second = timer.interval(20)
    assert second == pytest.approx(
        {"perf/step_time_s": 1.0, "perf/data_wait_s": 0.1, "perf/checkpoint_s": 0.0, "perf/steps_per_s": 1.0}
    )
    timer.add("eval", 2.0)
    summary = timer.goodput()
    assert summary["goodput/total_s"] == pytest.approx(34.0)
    assert summary["goodput/data_wait_s"] == pytest.approx(6.0)
    assert summary["goodput/init_s"] == pytest.approx(4.0)
    assert summary["goodput/fraction"] == pytest.approx((34.0 - 4.0 - 6.0 - 3.0 - 2.0) / 34.0)
    assert list(summary) == [
        "goodput/fraction", "goodput/total_s", "goodput/init_s", "goodput/first_step_s", "goodput/data_wait_s",
        "goodput/checkpoint_s", "goodput/eval_s",
    ]
