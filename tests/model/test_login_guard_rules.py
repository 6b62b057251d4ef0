"""The login counter's model (:mod:`cfgstore.model.login_guard`): the documented transitions
and the stored value format every backend uses."""

from __future__ import annotations

import pytest

from cfgstore.errors import InvalidData
from cfgstore.model.login_guard import (
    LoginAttempt,
    LoginFailures,
    add_failure,
    reserve_attempt,
)

MINUTE = 60_000
T0 = 1_700_000_000_000


def test_reservation_model_matches_the_documented_rule() -> None:
    kept, attempt = reserve_attempt(None, T0, 2, MINUTE, 5 * MINUTE)
    assert attempt == LoginAttempt(None, 1)
    assert kept == LoginFailures(1, T0 + 5 * MINUTE, None, T0)
    assert LoginFailures.decode(kept.encode(), "test") == kept
    assert reserve_attempt(kept, T0 + 1, 2, MINUTE, 5 * MINUTE)[0] is None
    # A count stored before the last attempt was kept reads as never attempted.
    old = LoginFailures.decode("1:9999999999999:0", "test")
    assert old.last_attempt_ms is None
    _, again = reserve_attempt(old, T0, 2, MINUTE, 5 * MINUTE)
    assert again == LoginAttempt(None, 2, T0 + MINUTE)
    with pytest.raises(InvalidData):
        LoginFailures.decode("1:2:3:4:5", "test")


def test_model_transition_matches_the_documented_rule() -> None:
    state = None
    for i in range(3):
        state = add_failure(state, T0 + i, 3, MINUTE)
    assert state == LoginFailures(3, T0 + 2 + MINUTE, T0 + 2 + MINUTE)
    assert LoginFailures.decode(state.encode(), "test") == state
    assert LoginFailures.decode("1:5:0", "test").locked_until_ms is None
    with pytest.raises(InvalidData):
        LoginFailures.decode("garbage", "test")
