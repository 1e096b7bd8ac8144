"""The component style, checked on what every stack file really declares: every resource but the
top-level components has a parent and is named after it, no resource is declared inside an
`apply` (preview would not see it), and every component registers its outputs."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Optional

import pulumi
import pytest

from testbed.replay.prefect import AUTOMATION

from components.config.reader import NAMESPACE
from tests.support.harness import WORK_POOL, evaluate_stack, stack_names

OUTPUT_MODULE = pulumi.output.__file__


@dataclass
class Seen:
    type_: str
    name: str
    component: bool
    parent: Optional[str]
    in_apply: bool
    key: int = 0
    parent_key: Optional[int] = None


@dataclass
class Recorder:
    resources: list[Seen] = field(default_factory=list)
    registered: set[int] = field(default_factory=set)
    components: dict[int, str] = field(default_factory=dict)


def _inside_apply() -> bool:
    """Whether an `Output.apply` callback is on the call stack."""
    frame: Any = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename == OUTPUT_MODULE and frame.f_code.co_name == "run":
            return True
        frame = frame.f_back
    return False


@cache
def recorded(stack: str) -> Recorder:
    recorder = Recorder()
    resource_init = pulumi.Resource.__init__
    register_outputs = pulumi.ComponentResource.register_outputs

    def init(self, t, name, custom, props=None, opts=None, *args, **kwargs):
        parent = opts.parent if opts is not None else None
        component = isinstance(self, pulumi.ComponentResource)
        recorder.resources.append(Seen(t, name, component, getattr(parent, "_name", None),
                                       _inside_apply(), id(self),
                                       None if parent is None else id(parent)))
        if component and t.startswith(f"{NAMESPACE}:"):  # ours; awsx's run remotely
            recorder.components[id(self)] = name
        resource_init(self, t, name, custom, props, opts, *args, **kwargs)
        self._name = name

    def outputs(self, outputs):
        recorder.registered.add(id(self))
        return register_outputs(self, outputs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pulumi.Resource, "__init__", init)
        patch.setattr(pulumi.ComponentResource, "register_outputs", outputs)
        evaluate_stack(stack)
    return recorder


@pytest.mark.parametrize("stack", stack_names())
def test_every_resource_but_the_top_level_components_has_a_parent_and_its_components_name(stack):
    resources = recorded(stack).resources
    by_key = {seen.key: seen for seen in resources}

    def owner(seen: Seen) -> Seen:
        """The nearest component above `seen` (a child may hang under a sibling resource)."""
        parent = by_key[seen.parent_key or 0]
        return parent if parent.component else owner(parent)

    for seen in resources:
        if seen.parent is None and (seen.component or seen.type_ in (WORK_POOL, AUTOMATION)):
            # Composed by components/composition.py under the stack itself. The work pool and the
            # automation beside it are dynamic resources standing on their own, like the
            # components; a parent now would change the pool's URN and replace the pool.
            continue
        assert seen.parent is not None, f"{seen.type_} {seen.name} has no parent"
        assert seen.name.startswith(f"{owner(seen).name}-"), (
            f"{seen.name} is not named after its component {owner(seen).name}")


@pytest.mark.parametrize("stack", stack_names())
def test_no_resource_is_declared_inside_an_apply(stack):
    inside = [f"{s.type_} {s.name}" for s in recorded(stack).resources if s.in_apply]
    assert not inside, f"declared inside an apply, invisible to preview: {inside}"


@pytest.mark.parametrize("stack", stack_names())
def test_every_component_registers_its_outputs(stack):
    recorder = recorded(stack)
    assert recorder.components, "no component recorded"
    silent = [name for key, name in recorder.components.items() if key not in recorder.registered]
    assert not silent, f"components without register_outputs: {silent}"
