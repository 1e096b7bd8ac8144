"""The Prefect worker on ECS Fargate: its service, IAM roles, credential secret, scaling, alarms and
the queue of its cluster's task events."""
