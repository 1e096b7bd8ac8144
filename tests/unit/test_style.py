"""The component style, checked on what every stack file really declares: every resource but the
top-level components has a parent and is named after it, no resource is declared inside an
`apply` (preview would not see it), and every component registers its outputs."""

from __future__ import annotations

import pytest

from testbed.replay.prefect import AUTOMATION

from components.config.reader import NAMESPACE
from tests.support import evaluations
from tests.support.harness import WORK_POOL, stack_names
from tools.mock_structure import Constructed, Structure


def recorded(stack: str) -> Structure:
    """The stack file's resource tree, from its evaluation shared with the other tests."""
    return evaluations.evaluated(stack).structure


@pytest.mark.parametrize("stack", stack_names())
def test_every_resource_but_the_top_level_components_has_a_parent_and_its_components_name(stack):
    resources = recorded(stack).constructed
    assert resources
    by_key = {seen.key: seen for seen in resources}

    def owner(seen: Constructed) -> Constructed:
        """The nearest component above `seen` (a child may hang under a sibling resource)."""
        parent = by_key[seen.parent_key or 0]
        return parent if parent.component else owner(parent)

    for seen in resources:
        if seen.parent is None and (seen.component or seen.type in (WORK_POOL, AUTOMATION)):
            # Composed by components/composition.py under the stack itself. The work pool and the
            # automation beside it are dynamic resources standing on their own, like the
            # components; a parent now would change the pool's URN and replace the pool.
            continue
        assert seen.parent is not None, f"{seen.type} {seen.name} has no parent"
        assert seen.name.startswith(f"{owner(seen).name}-"), (
            f"{seen.name} is not named after its component {owner(seen).name}")


@pytest.mark.parametrize("stack", stack_names())
def test_no_resource_is_declared_inside_an_apply(stack):
    constructed = recorded(stack).constructed
    assert constructed
    inside = [f"{s.type} {s.name}" for s in constructed if s.in_apply]
    assert not inside, f"declared inside an apply, invisible to preview: {inside}"


@pytest.mark.parametrize("stack", stack_names())
def test_every_component_registers_its_outputs(stack):
    structure = recorded(stack)
    # Ours; awsx's components run remotely.
    components = {seen.key: seen.name for seen in structure.constructed
                  if seen.component and seen.type.startswith(f"{NAMESPACE}:")}
    assert components, "no component recorded"
    silent = [name for key, name in components.items() if key not in structure.registered]
    assert not silent, f"components without register_outputs: {silent}"
