"""An estimated monthly bill for what a stack declares, from the price table in `pricing/`.

The input is the list of declared resources (type token, engine-shaped inputs) that the mock
engine records, so the estimate prices the declaration, not what runs in an account. Under mocks
awsx's VPC is a remote component whose children (NAT gateways, Elastic IPs) are not declared in
this process, so their number is derived from its inputs: one NAT gateway and one public IPv4
address for `Single`, one each per AZ for `OnePerAz`, none for `None`. A worker task in a public
subnet (`assignPublicIp`) holds a public IPv4 address of its own.

With autoscaling the service is priced at its minimum (steady state) and the maximum is shown as
the ceiling. Flow-run tasks are priced by use and are not part of the stack's fixed cost; the cost
per 1,000 flow runs adds them at the pool's default size for a stated duration (FLOW_RUN_MINUTES)
to the monthly cost spread over the price table's `flow_runs_per_month`.

`python -m tools.cost` (`make cost`) prints each stack's monthly cost as a ratio to the seed
report's architecture (examples/Pulumi.seed.yaml: two AZs, one NAT gateway, one on-demand x86
worker of dev's size), and beside it the cost per 1,000 flow runs, priced by the same program
and the same price table as the stacks, so the ratios compare like with like. Figures are
estimates of what the stacks declare, not of a bill.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from policies.worker_rules import awsx_nat_gateway_count
from tools.mock_engine import evaluate_stack, stack_names

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PRICES = ROOT / "pricing" / "us-east-1.json"

Resource = tuple[str, Mapping[str, Any]]

AWSX_VPC = "awsx:ec2:Vpc"
NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
EIP = "aws:ec2/eip:Eip"
SERVICE = "aws:ecs/service:Service"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
SCALING_TARGET = "aws:appautoscaling/target:Target"
CLUSTER = "aws:ecs/cluster:Cluster"
SECRET = "aws:secretsmanager/secret:Secret"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
KMS_KEY = "aws:kms/key:Key"
QUEUE = "aws:sqs/queue:Queue"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
ECR_REPOSITORY = "aws:ecr/repository:Repository"
S3_BUCKET = "aws:s3/bucket:Bucket"
S3_LOGGING = "aws:s3/bucketLogging:BucketLogging"
RDS_INSTANCE = "aws:rds/instance:Instance"
REPLICATION_GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"
LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"
DNS_NAMESPACE = "aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace"


@dataclass(frozen=True)
class PriceTable:
    region: str
    as_of: str
    # A price, or a table of prices by kind (an RDS class, a cache node type): see `of`.
    prices: Mapping[str, Any]
    assumptions: Mapping[str, Any]
    sources: Mapping[str, str]

    @classmethod
    def load(cls, path: Path = DEFAULT_PRICES) -> "PriceTable":
        data = json.loads(path.read_text())
        return cls(data["region"], data["as_of"], data["prices"], data["assumptions"],
                   data["sources"])

    def __getitem__(self, key: str) -> float:
        return float(self.prices[key])

    def assume(self, key: str) -> float:
        return float(self.assumptions[key])

    def of(self, key: str, kind: str) -> float:
        """A per-kind price (an RDS class, a cache node type); a kind the table lacks is an
        error, never a silent zero."""
        table = self.prices[key]
        if kind not in table:
            raise KeyError(f"pricing has no {key} for {kind}; add it to pricing/")
        return float(table[kind])


@dataclass(frozen=True)
class LineItem:
    item: str
    quantity: float
    unit: str
    unit_price: float
    monthly: float


@dataclass(frozen=True)
class Estimate:
    items: tuple[LineItem, ...]
    ceiling_extra: float = 0.0
    ceiling_note: str = ""

    @property
    def total(self) -> float:
        return round(sum(item.monthly for item in self.items), 2)

    @property
    def ceiling(self) -> float:
        return round(self.total + self.ceiling_extra, 2)


def _of(resources: Sequence[Resource], type_: str) -> list[Mapping[str, Any]]:
    return [props for t, props in resources if t == type_]


def nat_gateway_count(resources: Sequence[Resource]) -> int:
    """NAT gateways declared outright (real engine) or implied by the awsx VPC (mocks)."""
    explicit = len(_of(resources, NAT_GATEWAY))
    if explicit:
        return explicit
    return sum(awsx_nat_gateway_count(vpc) for vpc in _of(resources, AWSX_VPC))


@dataclass(frozen=True)
class WorkerShape:
    vcpu: float
    memory_gb: float
    arm: bool
    spot: bool
    tasks: int
    max_tasks: int
    public_ip: bool


WORKER_CONTAINER = "prefect-worker"


def _family(service: Mapping[str, Any]) -> str:
    """The family of the task definition a service runs (`.../task-definition/<family>:<rev>`)."""
    return str(service.get("taskDefinition", "")).rsplit("/", 1)[-1].split(":")[0]


def _runs_worker(definition: Mapping[str, Any]) -> bool:
    containers = definition.get("containerDefinitions") or "[]"
    if isinstance(containers, str):
        containers = json.loads(containers)
    return any(c.get("name") == WORKER_CONTAINER for c in containers)


def _split_services(resources: Sequence[Resource]
                    ) -> tuple[Optional[tuple[Mapping, Mapping]], list[tuple[Mapping, Mapping]]]:
    """(the worker's service and task definition, the other services with theirs). The engine
    registers resources as their inputs resolve, so declaration order says nothing: the worker is
    the service whose task definition runs the `prefect-worker` container."""
    services, definitions = _of(resources, SERVICE), _of(resources, TASK_DEFINITION)
    by_family = {d.get("family"): d for d in definitions}
    worker, others = None, []
    for service in services:
        definition = by_family.get(_family(service))
        if definition is None and len(services) == len(definitions) == 1:
            definition = definitions[0]  # a bare declaration without the family in its ARN
        if definition is None:
            continue
        if worker is None and _runs_worker(definition):
            worker = (service, definition)
        else:
            others.append((service, definition))
    if worker is None and others:
        worker = others.pop(0)
    return worker, others


def worker_shape(resources: Sequence[Resource]) -> Optional[WorkerShape]:
    worker, _ = _split_services(resources)
    if worker is None:
        return None
    service, definition = worker
    strategies = service.get("capacityProviderStrategies") or [{}]
    platform = definition.get("runtimePlatform") or {}
    tasks = int(service.get("desiredCount", 1))
    max_tasks = tasks
    for target in _of(resources, SCALING_TARGET):
        tasks, max_tasks = int(target["minCapacity"]), int(target["maxCapacity"])
    return WorkerShape(
        vcpu=int(definition["cpu"]) / 1024,
        memory_gb=int(definition["memory"]) / 1024,
        arm=platform.get("cpuArchitecture") == "ARM64",
        spot=strategies[0].get("capacityProvider") == "FARGATE_SPOT",
        tasks=tasks,
        max_tasks=max_tasks,
        public_ip=bool((service.get("networkConfiguration") or {}).get("assignPublicIp")),
    )


def server_shapes(resources: Sequence[Resource]) -> list[tuple[str, WorkerShape]]:
    """The services besides the worker's: a self-hosted server's tasks."""
    _, others = _split_services(resources)
    shapes = []
    for service, definition in others:
        strategies = service.get("capacityProviderStrategies") or [{}]
        tasks = int(service.get("desiredCount", 1))
        shapes.append((_family(service), WorkerShape(
            vcpu=int(definition["cpu"]) / 1024,
            memory_gb=int(definition["memory"]) / 1024,
            arm=(definition.get("runtimePlatform") or {}).get("cpuArchitecture") == "ARM64",
            spot=strategies[0].get("capacityProvider") == "FARGATE_SPOT",
            tasks=tasks, max_tasks=tasks,
            public_ip=bool((service.get("networkConfiguration") or {}).get("assignPublicIp")),
        )))
    return shapes


def task_month(shape: WorkerShape, prices: PriceTable) -> float:
    """One worker task for a month on its capacity provider and architecture."""
    arch = "arm" if shape.arm else "x86"
    hours = prices.assume("hours_per_month")
    hourly = (shape.vcpu * prices[f"fargate_{arch}_vcpu_hour"]
              + shape.memory_gb * prices[f"fargate_{arch}_gb_hour"])
    discount = prices.assume("fargate_spot_discount") if shape.spot else 0.0
    return hourly * hours * (1 - discount)


def _alarm_metrics(alarm: Mapping[str, Any]) -> int:
    """A metric-math alarm is billed per metric it reads."""
    queries = alarm.get("metricQueries") or []
    return sum(1 for q in queries if q.get("metric")) or 1


def _insights_enabled(cluster: Mapping[str, Any]) -> bool:
    return any(s.get("name") == "containerInsights" and s.get("value") in ("enabled", "enhanced")
               for s in cluster.get("settings") or [])


def estimate(resources: Sequence[Resource], prices: Optional[PriceTable] = None) -> Estimate:
    prices = prices or PriceTable.load()
    hours = prices.assume("hours_per_month")
    items: list[LineItem] = []

    def add(item: str, quantity: float, unit: str, price_key: str, factor: float = 1.0) -> None:
        if quantity:
            unit_price = prices[price_key]
            items.append(LineItem(item, quantity, unit, unit_price,
                                  round(quantity * unit_price * factor, 6)))

    shape = worker_shape(resources)
    workers = shape.tasks if shape else 0
    nat = nat_gateway_count(resources)
    add("NAT gateway hours", nat * hours, "hour", "nat_gateway_hour")
    add("NAT gateway data processed", workers * prices.assume("nat_gb_per_worker_month") if nat else 0,
        "GB", "nat_gateway_gb_processed")
    public_ips = len(_of(resources, EIP)) or nat
    if shape and shape.public_ip:
        public_ips += shape.tasks
    add("Public IPv4 address hours", public_ips * hours, "hour", "public_ipv4_hour")

    ceiling_extra, ceiling_note = 0.0, ""
    if shape:
        arch = "ARM64" if shape.arm else "X86_64"
        kind = "Spot" if shape.spot else "on demand"
        per_task = task_month(shape, prices)
        items.append(LineItem(
            f"Fargate worker {shape.vcpu:g} vCPU / {shape.memory_gb:g} GB {arch} {kind}",
            shape.tasks, "task-month", round(per_task, 4), round(per_task * shape.tasks, 4)))
        if shape.max_tasks > shape.tasks:
            extra = shape.max_tasks - shape.tasks
            ceiling_extra = per_task * extra
            if shape.public_ip:
                ceiling_extra += extra * hours * prices["public_ipv4_hour"]
            ceiling_note = f"autoscaling up to {shape.max_tasks} tasks"

    add("Secrets Manager secrets", len(_of(resources, SECRET)), "secret-month",
        "secrets_manager_secret_month")
    # A flow log's group is priced by the flow-log assumption below, at its own retention.
    flow_log_groups = {str(f.get("logDestination")) for f in _of(resources, FLOW_LOG)}
    flow_groups = [g for g in _of(resources, LOG_GROUP)
                   if any(arn.endswith(f":log-group:{g.get('name')}") for arn in flow_log_groups)]
    log_groups = [g for g in _of(resources, LOG_GROUP) if g not in flow_groups]
    if log_groups and workers:
        ingest = workers * prices.assume("log_gb_per_worker_month")
        add("CloudWatch Logs ingested", ingest, "GB", "cloudwatch_logs_ingest_gb")
        # Steady state: retention days' worth of logs are stored, at most a year's priced here.
        retention = min(int(g.get("retentionInDays") or 365) for g in log_groups)
        add("CloudWatch Logs stored", round(ingest * min(retention, 365) / 30, 3), "GB-month",
            "cloudwatch_logs_storage_gb_month")

    flow_logs = len(_of(resources, FLOW_LOG))
    if flow_logs:
        flow_ingest = flow_logs * prices.assume("flow_log_gb_per_vpc_month")
        add("VPC flow logs ingested (vended logs)", flow_ingest, "GB",
            "cloudwatch_vended_logs_ingest_gb")
        flow_retention = min([int(g.get("retentionInDays") or 365) for g in flow_groups] or [365])
        add("VPC flow logs stored", round(flow_ingest * min(flow_retention, 365) / 30, 3),
            "GB-month", "cloudwatch_logs_storage_gb_month")

    insights_metrics = 0
    for cluster in _of(resources, CLUSTER):
        if _insights_enabled(cluster):
            insights_metrics += int(
                prices.assume("container_insights_metrics_per_cluster")
                + prices.assume("container_insights_metrics_per_service") * len(_of(resources, SERVICE))
                + prices.assume("container_insights_metrics_per_task_family")
                * prices.assume("container_insights_task_families"))
    add("Container Insights metrics", insights_metrics, "metric-month", "cloudwatch_metric_month")
    add("CloudWatch alarm metrics", sum(_alarm_metrics(a) for a in _of(resources, ALARM)),
        "metric-month", "cloudwatch_alarm_metric_month")
    add("KMS customer managed keys", len(_of(resources, KMS_KEY)), "key-month", "kms_key_month")
    queues = len(_of(resources, QUEUE))
    if queues and workers:
        add("SQS requests (observer polling)",
            workers * prices.assume("sqs_requests_per_worker_month") / 1e6, "million requests",
            "sqs_million_requests")
    add_flow_code(resources, prices, add)
    items.extend(server_items(resources, prices, workers))
    return Estimate(tuple(items), round(ceiling_extra, 2), ceiling_note)


def add_flow_code(resources: Sequence[Resource], prices: PriceTable, add: Any) -> None:
    """The flow-image repository's storage and the flow-code bucket's storage and requests, at the
    usage the price table assumes (an adopted repository or bucket is not the stack's cost)."""
    add("ECR flow images stored", len(_of(resources, ECR_REPOSITORY))
        * prices.assume("ecr_gb_per_repository"), "GB-month", "ecr_storage_gb_month")
    # The stack's access-log bucket (components/platform/access_logs.py) receives the others' logs.
    log_buckets = {str(b.get("targetBucket")) for b in _of(resources, S3_LOGGING)} | {
        str((lb.get("accessLogs") or {}).get("bucket")) for lb in _of(resources, LOAD_BALANCER)
        if lb.get("accessLogs")}
    all_buckets = _of(resources, S3_BUCKET)
    buckets = len([b for b in all_buckets if str(b.get("bucket")) not in log_buckets])
    add("S3 access logs stored", (len(all_buckets) - buckets)
        * prices.assume("access_log_gb_per_month"), "GB-month", "s3_standard_gb_month")
    runs = buckets * prices.assume("flow_runs_per_month")
    add("S3 flow code and results stored", buckets * prices.assume("s3_gb_per_bucket"),
        "GB-month", "s3_standard_gb_month")
    add("S3 PUT/LIST requests (flow runs)", runs * prices.assume("s3_put_requests_per_flow_run")
        / 1000, "thousand requests", "s3_put_thousand_requests")
    add("S3 GET requests (flow runs)", runs * prices.assume("s3_get_requests_per_flow_run") / 1000,
        "thousand requests", "s3_get_thousand_requests")


def server_items(resources: Sequence[Resource], prices: PriceTable,
                 workers: int) -> list[LineItem]:
    """A self-hosted Prefect server: its Fargate tasks and their addresses, RDS (instance,
    storage, backups beyond the free allowance, its managed secret), ElastiCache, the ALB and
    Cloud Map."""
    hours = prices.assume("hours_per_month")
    items: list[LineItem] = []

    def line(item: str, quantity: float, unit: str, unit_price: float) -> None:
        if quantity:
            items.append(LineItem(item, round(quantity, 4), unit, round(unit_price, 6),
                                  round(quantity * unit_price, 4)))

    public_ips = 0
    for family, shape in server_shapes(resources):
        arch = "ARM64" if shape.arm else "X86_64"
        kind = "Spot" if shape.spot else "on demand"
        role = "server" + family.rsplit("-server", 1)[-1] if "-server" in family else family
        line(f"Fargate {role} {shape.vcpu:g} vCPU / {shape.memory_gb:g} GB {arch} {kind}",
             shape.tasks, "task-month", task_month(shape, prices))
        public_ips += shape.tasks if shape.public_ip else 0
    line("Public IPv4 address hours (server tasks)", public_ips * hours, "hour",
         prices["public_ipv4_hour"])
    for db in _of(resources, RDS_INSTANCE):
        factor = prices["rds_multi_az_factor"] if db.get("multiAz") else 1.0
        klass = db["instanceClass"]
        line(f"RDS PostgreSQL {klass}{' Multi-AZ' if factor > 1 else ''}", hours, "hour",
             prices.of("rds_postgres_hour", klass) * factor)
        storage = float(db.get("allocatedStorage", 20))
        line("RDS gp3 storage", storage * factor, "GB-month", prices["rds_gp3_gb_month"])
        kept = storage * prices.assume("rds_daily_change_share") * float(
            db.get("backupRetentionPeriod", 0))
        line("RDS backup storage beyond the free allowance", max(0.0, kept - storage),
             "GB-month", prices["rds_backup_gb_month"])
        if db.get("monitoringInterval"):
            line("RDS Enhanced Monitoring (CloudWatch Logs ingested)",
                 prices.assume("rds_enhanced_monitoring_gb_month"), "GB",
                 prices["cloudwatch_logs_ingest_gb"])
        if db.get("manageMasterUserPassword"):
            line("Secrets Manager secrets (RDS managed)", 1, "secret-month",
                 prices["secrets_manager_secret_month"])
    for group in _of(resources, REPLICATION_GROUP):
        node = group["nodeType"]
        line(f"ElastiCache {node} nodes", int(group.get("numCacheClusters", 1)) * hours,
             "node-hour", prices.of("elasticache_node_hour", node))
    for _ in _of(resources, LOAD_BALANCER):
        line("Application Load Balancer hours", hours, "hour", prices["alb_hour"])
        line("Application Load Balancer LCU hours", prices.assume("alb_lcu") * hours, "LCU-hour",
             prices["alb_lcu_hour"])
    namespaces = _of(resources, DNS_NAMESPACE)
    if namespaces:
        line("Route 53 private hosted zone (Cloud Map namespace)", len(namespaces), "zone-month",
             prices["route53_hosted_zone_month"])
        registered = sum(int(service.get("desiredCount", 1))
                         for service, _ in _split_services(resources)[1]
                         if service.get("serviceRegistries"))
        line("Cloud Map registered instances", registered, "instance-month",
             prices["cloud_map_instance_month"])
        clients = workers + registered
        line("Cloud Map DNS queries",
             clients * prices.assume("cloud_map_queries_per_client_month") / 1e6,
             "million queries", prices["cloud_map_million_dns_queries"])
    return items


def ratio(cost: float, baseline: float) -> float:
    return round(cost / baseline, 3)


def render(estimate_: Estimate, prices: PriceTable) -> list[str]:
    lines = [f"Estimated monthly cost, {prices.region} list prices of {prices.as_of} "
             "(pricing/{0}.json):".format(prices.region)]
    for item in estimate_.items:
        lines.append(f"  {item.item:<52} {item.quantity:>10.3f} {item.unit:<16} "
                     f"x ${item.unit_price:<9g} = ${item.monthly:>8.2f}")
    lines.append(f"  {'Total':<52} {'':>10} {'':<16}   {'':<10}  ${estimate_.total:>8.2f}")
    if estimate_.ceiling_extra:
        lines.append(f"  Ceiling with {estimate_.ceiling_note}: ${estimate_.ceiling:.2f}")
    return lines


def items_by_name(estimate_: Estimate) -> dict[str, LineItem]:
    return {item.item: item for item in estimate_.items}


# --- Cost per 1,000 flow runs ------------------------------------------------------------------

# The average billed life of a flow-run task. Fargate bills from the start of the image pull until
# the task stops, per second with a one-minute minimum: a flow-run task pulls the flow image and
# starts Python and Prefect (about a minute on Fargate for the pinned prefect image), runs the
# flow, reports its final state and exits. Five minutes stands for a short batch flow; a team
# with longer flows scales the task share of the figure linearly.
FLOW_RUN_MINUTES = 5.0
FARGATE_MINIMUM_MINUTES = 1.0
FLOW_RUN_PLATFORM_NOTE = ("flow-run tasks are x86: the base job template sets no runtime "
                          "platform, and Fargate's default is X86_64")


@dataclass(frozen=True)
class FlowRunShape:
    """A flow-run task as the stack's work pool declares it by default (its job variables)."""
    vcpu: float
    memory_gb: float
    spot: bool


def flow_run_shape(exports: Mapping[str, Any]) -> FlowRunShape:
    """From the evaluated stack's `workPoolJobVariables` export: the `cpu` and `memory` the pool
    gives a flow run unless its deployment overrides them (`flowRunCpu`/`flowRunMemory`), and the
    capacity provider it runs on."""
    variables = exports["workPoolJobVariables"]
    strategy = (variables.get("capacity_provider_strategy") or [{}])[0]
    return FlowRunShape(vcpu=int(variables["cpu"]) / 1024,
                        memory_gb=int(variables["memory"]) / 1024,
                        spot=strategy.get("capacityProvider") == "FARGATE_SPOT")


def flow_run_task_cost(shape: FlowRunShape, prices: PriceTable,
                       minutes: float = FLOW_RUN_MINUTES) -> float:
    """One flow run's own Fargate task (x86: see FLOW_RUN_PLATFORM_NOTE), billed minutes."""
    hours = max(minutes, FARGATE_MINIMUM_MINUTES) / 60
    hourly = (shape.vcpu * prices["fargate_x86_vcpu_hour"]
              + shape.memory_gb * prices["fargate_x86_gb_hour"])
    discount = prices.assume("fargate_spot_discount") if shape.spot else 0.0
    return hourly * hours * (1 - discount)


def runs_per_month(prices: PriceTable) -> float:
    """The volume the standing cost is spread over: the price table's one assumption of it."""
    return prices.assume("flow_runs_per_month")


@dataclass(frozen=True)
class RunCost:
    """Cost per 1,000 flow runs: the standing monthly cost spread over `runs_per_month`, plus
    1,000 flow-run tasks."""
    standing: float
    tasks: float

    @property
    def total(self) -> float:
        return round(self.standing + self.tasks, 2)


def per_thousand_runs(monthly: float, shape: FlowRunShape, prices: PriceTable) -> RunCost:
    """In cents, each part rounded, so that the parts add up to the total as printed."""
    return RunCost(standing=round(monthly / runs_per_month(prices) * 1000, 2),
                   tasks=round(flow_run_task_cost(shape, prices) * 1000, 2))


def needs_prefect_plan(exports: Mapping[str, Any]) -> bool:
    """A stack without its own server (no `serverMode` export: `prefectServer: none`) talks to
    Prefect Cloud, whose plan the price table does not price; a self-hosted stack needs none."""
    return not exports.get("serverMode")


# --- `python -m tools.cost`: each stack against the seed ---------------------------------------

DEV_TARGET = 0.25
# Dev with its own Prefect server (single, internal): the seed also needed a paid Prefect plan.
SELF_HOSTED_DEV_TARGET = 0.75
TARGETS = {"dev": DEV_TARGET, "selfhosted-dev": SELF_HOSTED_DEV_TARGET}
SEED_PLAN_NOTE = ("the seed architecture also needed a paid Prefect Cloud plan to run anything "
                  "(its price is not in pricing/, so not in these figures)")
CLOUD_PLAN_NOTE = ("stacks without their own server (prefectServer: none) use Prefect Cloud: "
                   "its plan is not priced here")


@dataclass(frozen=True)
class StackCost:
    monthly: float
    ceiling: float
    per_1000: RunCost
    cloud_plan: bool


def stack_costs(prices: PriceTable, evaluated: Optional[Callable[[str], Any]] = None,
                ) -> dict[str, StackCost]:
    """stack -> its steady-state monthly total, the ceiling with autoscaling and the cost per
    1,000 flow runs, for the seed and each stack. `evaluated(stack)` is the mock engine's
    `evaluate_stack` unless a cached one is given."""
    evaluated = evaluated or evaluate_stack
    result = {}
    for stack in ("seed", *stack_names()):
        evaluation = evaluated(stack)
        cost = estimate([(r.type, r.inputs) for r in evaluation.resources], prices)
        result[stack] = StackCost(
            cost.total, cost.ceiling,
            per_thousand_runs(cost.total, flow_run_shape(evaluation.exports), prices),
            needs_prefect_plan(evaluation.exports))
    return result


def per_run_basis(prices: PriceTable) -> str:
    return (f"per 1,000 flow runs: the monthly cost spread over {runs_per_month(prices):,.0f} runs "
            f"a month (pricing/'s flow_runs_per_month), plus each run's own Fargate task at the "
            f"pool's default flowRunCpu/flowRunMemory for {FLOW_RUN_MINUTES:g} min "
            f"(tools/cost.py FLOW_RUN_MINUTES)")


def main(evaluated: Optional[Callable[[str], Any]] = None) -> int:
    prices = PriceTable.load()
    figures = stack_costs(prices, evaluated)
    seed = figures["seed"].monthly
    print(f"Monthly estimate, {prices.region} list prices of {prices.as_of}; seed = "
          f"${seed:.2f}/month")
    print(f"{'stack':<16} {'$/month':>9} {'x seed':>7} {'$/1k runs':>10} {'ceiling':>9}")
    for stack, cost in figures.items():
        extra = f"${cost.ceiling:.2f}" if cost.ceiling != cost.monthly else ""
        plan = " + Prefect plan" if cost.cloud_plan else ""
        print(f"{stack:<16} {f'${cost.monthly:.2f}':>9} {ratio(cost.monthly, seed):>7.3f} "
              f"{f'${cost.per_1000.total:.2f}':>10} {extra:>9}{plan}".rstrip())
    print(f"$/1k runs is {per_run_basis(prices)}.")
    print(f"Notes: {SEED_PLAN_NOTE}; {CLOUD_PLAN_NOTE}.")
    met = True
    for stack, target in TARGETS.items():
        stack_ratio = ratio(figures[stack].monthly, seed)
        verdict = "meets" if stack_ratio <= target else "misses"
        met = met and stack_ratio <= target
        print(f"{stack} is {stack_ratio:.3f}x the seed: {verdict} the {target}x target")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
