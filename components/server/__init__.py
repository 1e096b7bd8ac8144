"""The self-hosted Prefect server (`prefectServer` single or ha): its database, Redis, Fargate
services, access path, alarms, credential rotation, and their composition."""
