"""The resource tree as the program built it in Python, recorded while the mock engine runs it:
each resource's constructor call (its parent, whether an `Output.apply` callback made it) and which
components registered their outputs. The style tests read it (tests/unit/test_style.py); the
engine's requests carry neither the apply nor the Python objects."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import pulumi

_OUTPUT_MODULE = pulumi.output.__file__


@dataclass
class Constructed:
    type: str
    name: str
    component: bool
    parent: Optional[str]
    in_apply: bool
    # The object's identity within this evaluation, and its parent's: how a child finds its owner.
    key: int = 0
    parent_key: Optional[int] = None


@dataclass
class Structure:
    constructed: list[Constructed] = field(default_factory=list)
    # The keys of the components that called `register_outputs`.
    registered: set[int] = field(default_factory=set)


def _inside_apply() -> bool:
    """Whether an `Output.apply` callback is on the call stack."""
    frame: Any = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename == _OUTPUT_MODULE and frame.f_code.co_name == "run":
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def recording_structure() -> Iterator[Structure]:
    """Record every resource constructed, and every `register_outputs`, until the block ends."""
    structure = Structure()
    resource_init = pulumi.Resource.__init__
    register_outputs = pulumi.ComponentResource.register_outputs

    def init(self: pulumi.Resource, t: str, name: str, custom: bool, props: Any = None,
             opts: Optional[pulumi.ResourceOptions] = None, *args: Any, **kwargs: Any) -> None:
        parent = opts.parent if opts is not None else None
        structure.constructed.append(Constructed(
            t, name, isinstance(self, pulumi.ComponentResource),
            getattr(parent, "_name", None), _inside_apply(), id(self),
            None if parent is None else id(parent)))
        resource_init(self, t, name, custom, props, opts, *args, **kwargs)

    def outputs(self: pulumi.ComponentResource, outputs: Any) -> None:
        structure.registered.add(id(self))
        register_outputs(self, outputs)

    pulumi.Resource.__init__ = init  # type: ignore[method-assign]
    pulumi.ComponentResource.register_outputs = outputs  # type: ignore[method-assign]
    try:
        yield structure
    finally:
        pulumi.Resource.__init__ = resource_init  # type: ignore[method-assign]
        pulumi.ComponentResource.register_outputs = register_outputs  # type: ignore[method-assign]
