"""Arrival generators: mean rate and burstiness within statistical tolerance for a fixed seed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.serving.arrivals import ArrivalSpec, RampStrategy, RampUp, arrival_offsets, rate_at


def _gaps(spec: ArrivalSpec, n: int = 4000, seed: int = 7) -> np.ndarray:
    return np.diff(np.concatenate([[0.0], arrival_offsets(n, spec, seed)]))


@pytest.mark.parametrize("burstiness", [0.25, 1.0, 4.0])
def test_mean_rate_and_burstiness(burstiness: float) -> None:
    rate = 20.0
    gaps = _gaps(ArrivalSpec(request_rate=rate, burstiness=burstiness))
    assert 1.0 / gaps.mean() == pytest.approx(rate, rel=1e-9)  # rescaled so n requests take n / rate
    cv = gaps.std() / gaps.mean()  # gamma(shape=b): coefficient of variation 1/sqrt(b)
    assert cv == pytest.approx(1.0 / math.sqrt(burstiness), rel=0.08)


def test_poisson_gaps_are_exponential() -> None:
    gaps = _gaps(ArrivalSpec(request_rate=10.0))
    mean = gaps.mean()
    # exponential: P(gap > mean) = 1/e; the median is mean * ln 2
    assert (gaps > mean).mean() == pytest.approx(math.exp(-1), abs=0.03)
    assert np.median(gaps) == pytest.approx(mean * math.log(2), rel=0.08)


def test_fixed_seed_repeats_and_other_seed_differs() -> None:
    spec = ArrivalSpec(request_rate=5.0, burstiness=0.5)
    a, b = arrival_offsets(100, spec, seed=1), arrival_offsets(100, spec, seed=1)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, arrival_offsets(100, spec, seed=2))
    assert np.all(np.diff(a) >= 0)


def test_infinite_rate_and_infinite_burstiness() -> None:
    assert np.all(arrival_offsets(10, ArrivalSpec()) == 0.0)
    even = arrival_offsets(5, ArrivalSpec(request_rate=4.0, burstiness=math.inf))
    assert even == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.25])


def test_linear_ramp_up() -> None:
    spec = ArrivalSpec(request_rate=1.0, ramp_up=RampUp(RampStrategy.LINEAR, 2.0, 20.0))
    assert rate_at(spec, 0, 11) == pytest.approx(2.0)
    assert rate_at(spec, 5, 11) == pytest.approx(11.0)
    assert rate_at(spec, 10, 11) == pytest.approx(20.0)
    gaps = _gaps(spec, n=3000)
    # early gaps are long, late ones short: mean gap of each tenth follows 1/rate
    assert gaps[:300].mean() > 3 * gaps[-300:].mean()
    assert 1.0 / gaps[-300:].mean() == pytest.approx(19.4, rel=0.15)


def test_exponential_ramp_up() -> None:
    spec = ArrivalSpec(ramp_up=RampUp(RampStrategy.EXPONENTIAL, 1.0, 100.0))
    assert rate_at(spec, 50, 101) == pytest.approx(10.0)


def test_invalid_specs() -> None:
    for kwargs in ({"request_rate": 0.0}, {"burstiness": 0.0}):
        with pytest.raises(ValueError):
            ArrivalSpec(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RampUp(RampStrategy.LINEAR, 0.0, 1.0)
