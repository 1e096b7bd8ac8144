"""The moto replay lives in the test bed (testbed/replay/: a core plus one module per AWS service);
this name stays importable for the tests, and `HANDLERS` here is the same table."""

from testbed.replay import *  # noqa: F403
from testbed.replay import HANDLERS, POOL_NOT_CREATED  # noqa: F401
