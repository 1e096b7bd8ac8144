"""What the stack declares in Prefect, not AWS: the work pool, its base job template, the stuck-run
automation, the REST base they share, and the in-VPC bootstrap that upserts them for the stack's own
server."""
