"""A Prefect ECS worker on AWS Fargate: reads the stack's config once, composes the components and
exports what a work pool and an operator need. It declares no resource of its own."""

import pulumi

from components.composition import compose_stack
from components.config.settings import load_settings

settings = load_settings(pulumi.Config(), pulumi.get_project(), pulumi.get_stack())
stack = compose_stack(settings)

for key, value in stack.exports().items():
    pulumi.export(key, value)
