"""pyproject.toml's pytest filterwarnings: a warning from modelport's own code fails the test."""

from __future__ import annotations

import warnings

import pytest


def _warn_from(module: str, category: type[Warning]) -> None:
    # a warning is attributed to the module whose frame issues it (at its stacklevel)
    exec(
        "warnings.warn('x', category)",
        {"__name__": module, "warnings": warnings, "category": category},
    )


@pytest.mark.parametrize("module", ["modelport", "modelport.serve.model"])
@pytest.mark.parametrize("category", [UserWarning, RuntimeWarning, DeprecationWarning])
def test_a_warning_from_modelport_is_an_error(module, category):
    with pytest.raises(category):
        _warn_from(module, category)


def test_third_party_deprecations_stay_ignored():
    with warnings.catch_warnings(record=True) as seen:
        _warn_from("somelib.module", DeprecationWarning)
        _warn_from("modelport_lookalike", DeprecationWarning)
    assert seen == []
