"""GreyScale: the one grey-level -> physical conversion (hand-computed values)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nowcast.data.physical import GreyScale


def test_hko7_grey_to_dbz_to_rain_rate_by_hand():
    # P = 0.328 -> dBZ = 70 * 0.328 - 10 = 12.96;
    # R = 10 ** ((12.96 - 10 log10 58.53) / (10 * 1.56)) = 10 ** (-0.30216) = 0.4985 mm/h
    s = GreyScale.hko7()
    assert s.to_source(0.328) == pytest.approx(12.96)
    assert s.to_score(0.328) == pytest.approx(0.4985, abs=5e-4)
    assert s.score_units == "mm/h"


def test_rain_rate_archive_is_linear_without_zr():
    # mm/h archive 0..50: P = 0.2 -> 10 mm/h exactly (no Z-R relation)
    s = GreyScale("mm/h", 0.0, 50.0)
    assert s.to_score(0.2) == pytest.approx(10.0)
    assert s.from_score(0.5) == pytest.approx(0.01)
    assert s.score_units == "mm/h"
    assert "no Z-R" in s.describe()


def test_zr_given_to_rain_rate_archive_is_dropped():
    s = GreyScale("mm h-1", 0.0, 50.0, zr_a=200.0, zr_b=1.6)
    assert (s.units, s.zr_a, s.zr_b) == ("mm/h", None, None)
    assert s.to_score(0.2) == pytest.approx(10.0)


@pytest.mark.parametrize(
    "scale",
    [GreyScale.hko7(), GreyScale("mm/h", 0.0, 50.0), GreyScale("kg m-2", 0.0, 80.0)],
)
def test_round_trip_and_types(scale):
    p = np.linspace(0.05, 1.0, 7)
    for x in (p, torch.tensor(p, dtype=torch.float64), 0.37):
        y = scale.to_score(x)
        assert type(y) is type(x)
        back = scale.from_score(y)
        assert type(back) is type(x)
        np.testing.assert_allclose(np.asarray(back), np.asarray(x), rtol=1e-9)
    assert scale.from_source(scale.to_source(0.25)) == pytest.approx(0.25)


def test_other_units_score_in_source_units():
    s = GreyScale("kg m-2", 0.0, 80.0)
    assert s.score_units == "kg m-2"
    assert s.to_score(0.5) == pytest.approx(40.0)


def test_describe_hko7():
    assert GreyScale.hko7().describe() == (
        "grey P -> dBZ = 70 P - 10 -> R (mm/h) by Z = 58.53 R^1.56"
    )


def test_dict_round_trip():
    for s in (GreyScale.hko7(), GreyScale("mm/h", 0.0, 50.0)):
        assert GreyScale.from_dict(s.to_dict()) == s


def test_from_attrs_precedence():
    # the file's own Z-R wins over the config's; the config fills in when none recorded
    dbz_attrs = {"source_units": "dBZ", "zmin": -10.0, "zmax": 60.0}
    recorded = {**dbz_attrs, "zr_a": 200.0, "zr_b": 1.6}
    assert GreyScale.from_attrs(recorded, 58.53, 1.56).zr_a == 200.0
    assert GreyScale.from_attrs(dbz_attrs, 300.0, 1.4).zr_a == 300.0
    assert GreyScale.from_attrs(dbz_attrs) == GreyScale.hko7()
    # rain-rate archive: the config's Z-R is ignored, no error
    rain_attrs = {"source_units": "mm/h", "zmin": 0, "zmax": 50}
    mmh = GreyScale.from_attrs(rain_attrs, 58.53, 1.56)
    assert mmh.zr_a is None and mmh.to_score(0.2) == pytest.approx(10.0)


@pytest.mark.parametrize(
    "attrs, match",
    [
        ({"zmin": 0.0, "zmax": 50.0}, "source_units"),
        ({"source_units": "", "zmin": 0.0, "zmax": 50.0}, "source units are missing"),
        ({"source_units": "mm/h", "zmin": 5.0, "zmax": 5.0}, "vmax > vmin"),
        ({"source_units": "dBZ", "zmin": math.nan, "zmax": 60.0}, "finite"),
    ],
)
def test_from_attrs_errors(attrs, match):
    with pytest.raises(ValueError, match=match):
        GreyScale.from_attrs(attrs)


def test_dbz_scale_needs_positive_zr():
    with pytest.raises(ValueError, match="Z-R"):
        GreyScale("dBZ", -10.0, 60.0)
    with pytest.raises(ValueError, match="positive"):
        GreyScale("dBZ", -10.0, 60.0, -1.0, 1.5)
