"""A config the program refuses: the `ConfigError` it raises before declaring anything, read as the
tests of every config table read it."""

from __future__ import annotations

from typing import Any

import pytest

from components.config.reader import ConfigError
from tests.support.harness import PROJECT, TEST_API_KEY, RecordingMocks, evaluate


def refused(config: dict[str, str], **kwargs: Any) -> tuple[str, RecordingMocks]:
    """The refusal's message, and what the mocks saw before it (`kwargs` go to `evaluate`)."""
    mocks = RecordingMocks()
    with pytest.raises(ConfigError) as raised:
        evaluate(config, mocks=mocks, **kwargs)
    return str(raised.value), mocks


def assert_refused_before_any_resource(config: dict[str, str], key: str, shown: str,
                                       accepted: str, **kwargs: Any) -> None:
    """Refused with the key, the value as given and what is accepted; no resource declared, no
    invoke made, and the credential nowhere in the message."""
    message, mocks = refused(config, **kwargs)
    assert f"{PROJECT}:{key} = {shown} is not valid: " in message
    assert accepted in message
    assert TEST_API_KEY not in message
    assert mocks.resources == [] and mocks.calls == []
