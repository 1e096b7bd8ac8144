"""Replay what the program declared, under mocks, into a moto server (see `core`).

`core` holds the engine (`Replay`, `Inputs`, the id map) and `HANDLERS`, the table by type token;
each other module is one AWS service's handlers, registered into `HANDLERS` on import. A new
resource type gets its handler in the module of its service, or a new module imported here.
"""

from testbed.replay import (  # noqa: F401  (each registers its handlers)
    ec2, iam, secretsmanager, logs, ecs, sqs, events, kms, sns, cloudwatch, appautoscaling, prefect,
    hardening, ecr, s3,
    # The self-hosted server's resources.
    rds, elasticache, elbv2, acm_route53, servicediscovery, sfn, vpc,
)
from testbed.replay.prefect import POOL_NOT_CREATED  # noqa: F401
from testbed.replay.core import (  # noqa: F401  (the package's API)
    HANDLERS, Handler, Inputs, Replay, ReplayError, UnknownResourceTypes,
    aws_managed_policies, real_exports, replay, start_service_tasks,
)
