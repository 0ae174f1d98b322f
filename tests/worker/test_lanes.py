"""Priority lanes on the worker, on plain data: how many batch requests it may take (spare capacity only,
the whole of it in off-peak windows), and off-peak windows as configured (UTC, wrapping midnight)."""

from __future__ import annotations

import calendar

import pytest

from fleet.settings import WorkerSettings, parse_window
from worker.lanes import Lanes, batch_room, minute_of_day


def test_batch_work_takes_only_slots_that_interactive_work_and_its_reserve_leave() -> None:
    assert batch_room(8, interactive=0, batch=0, reserve=0.5, off_peak=False) == 4
    assert batch_room(8, interactive=0, batch=3, reserve=0.5, off_peak=False) == 1
    assert batch_room(8, interactive=3, batch=1, reserve=0.5, off_peak=False) == 0
    assert batch_room(8, interactive=9, batch=0, reserve=0.5, off_peak=False) == 0  # never negative
    assert batch_room(8, interactive=2, batch=1, reserve=0.5, off_peak=True) == 5  # off-peak: no reserve
    assert batch_room(8, interactive=0, batch=0, reserve=1.0, off_peak=False) == 0  # batch only off-peak
    assert batch_room(3, interactive=0, batch=0, reserve=0.5, off_peak=False) == 1  # the reserve rounds up


def test_off_peak_windows_wrap_midnight_and_bad_ones_fail_at_start() -> None:
    w = WorkerSettings(off_peak_utc=["22:00-06:00", "12:30-13:00"])
    assert w.off_peak(23 * 60) and w.off_peak(0) and w.off_peak(5 * 60 + 59) and not w.off_peak(6 * 60)
    assert w.off_peak(12 * 60 + 30) and not w.off_peak(13 * 60) and not w.off_peak(12 * 60 + 29)
    assert parse_window("00:00-24:00") == (0, 1440)
    for bad in ("22-06", "25:00-01:00", "10:00-10:00", "ab:cd-01:00", ""):
        with pytest.raises(ValueError):
            WorkerSettings(off_peak_utc=[bad])
    with pytest.raises(ValueError):
        WorkerSettings(batch_reserve=1.5)


def test_lanes_read_the_utc_clock_they_are_given() -> None:
    lanes = Lanes(8, WorkerSettings(batch_reserve=0.5, off_peak_utc=["01:00-02:00"]))
    night = calendar.timegm((2026, 11, 30, 1, 30, 0, 0, 0, 0))
    day = calendar.timegm((2026, 11, 30, 9, 0, 0, 0, 0, 0))
    assert minute_of_day(night) == 90
    assert lanes.batch_room(0, 0, night) == 8 and lanes.batch_room(0, 0, day) == 4
