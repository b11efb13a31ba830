import pytest

from sparsetune.schedules import cubic, validate_cubic


def test_cubic_matches_zhu_gupta_with_fractional_warmup_and_cooldown():
    T, s_f = 100, 0.9
    assert cubic(0, T, 0.0, s_f) == 0.0
    assert cubic(10, T, 0.0, s_f) == 0.0  # warm-up: t <= 0.1 T
    # halfway through the ramp (10..70): s_f + (0 - s_f) * (1 - 0.5)^3
    assert cubic(40, T, 0.0, s_f) == pytest.approx(0.9 - 0.9 * 0.125)
    assert cubic(71, T, 0.0, s_f) == s_f  # cool-down: t > T - 0.3 T
    values = [cubic(t, T, 0.0, s_f) for t in range(T + 1)]
    assert all(b >= a for a, b in zip(values, values[1:]))


def test_step_counts_are_accepted_and_overlap_rejected():
    assert cubic(5, 100, 0.0, 0.5, warmup=5, cooldown=10) == 0.0
    with pytest.raises(ValueError, match="must be < total steps"):
        validate_cubic(10, 0.5, 0.6)
