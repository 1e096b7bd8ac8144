"""The cost estimate: its arithmetic, what it derives from the declaration, and the target that dev
costs at most a quarter of the seed report's architecture."""

import json

import pytest

from tools.cost import (FLOW_RUN_MINUTES, FlowRunShape, PriceTable, estimate, flow_run_shape,
                        flow_run_task_cost, items_by_name, nat_gateway_count, per_thousand_runs,
                        stack_costs, task_month, worker_shape)
from tools.cost import main as cost_main
from tools.mock_engine import stack_names
from tests.support.evaluations import evaluated, evaluated_seed
from tests.support.harness import ROOT, load_stack_config

PRICES = PriceTable.load()
HOURS = 730


def declared(evaluation):
    return [(r.type, r.inputs) for r in evaluation.resources]


def vpc(strategy, azs):
    return ("awsx:ec2:Vpc", {"natGateways": {"strategy": strategy}, "numberOfAvailabilityZones": azs})


def test_price_table_names_its_sources_date_and_spot_assumption():
    raw = json.loads((ROOT / "pricing" / "us-east-1.json").read_text())
    assert raw["region"] == "us-east-1" and raw["as_of"]
    for family in ("nat_gateway", "public_ipv4", "fargate", "secrets_manager", "cloudwatch", "sqs"):
        assert raw["sources"][family].startswith("https://aws.amazon.com/")
    assert 0 < raw["assumptions"]["fargate_spot_discount"] < 1
    for key in ("nat_gateway_hour", "nat_gateway_gb_processed", "public_ipv4_hour",
                "fargate_x86_vcpu_hour", "fargate_x86_gb_hour", "fargate_arm_vcpu_hour",
                "fargate_arm_gb_hour", "secrets_manager_secret_month", "cloudwatch_logs_ingest_gb",
                "cloudwatch_logs_storage_gb_month", "cloudwatch_metric_month",
                "cloudwatch_alarm_metric_month", "sqs_million_requests"):
        assert raw["prices"][key] > 0


@pytest.mark.parametrize("strategy, azs, expected", [
    ("None", 2, 0), ("Single", 2, 1), ("Single", 3, 1), ("OnePerAz", 3, 3), ("OnePerAz", 2, 2)])
def test_nat_gateways_are_derived_from_the_awsx_vpc_under_mocks(strategy, azs, expected):
    assert nat_gateway_count([vpc(strategy, azs)]) == expected


def test_nat_gateways_declared_by_the_real_engine_are_counted_as_they_are():
    explicit = [vpc("OnePerAz", 3), *[("aws:ec2/natGateway:NatGateway", {})] * 2]
    assert nat_gateway_count(explicit) == 2


def test_stack_nat_counts_follow_their_mode():
    assert [nat_gateway_count(declared(evaluated(s))) for s in ("dev", "staging", "prod")] == [0, 1, 3]


def test_fargate_task_month_is_vcpu_and_memory_hours_at_list_price():
    seed = worker_shape(declared(evaluated_seed()))
    assert (seed.vcpu, seed.memory_gb, seed.arm, seed.spot) == (0.25, 0.5, False, False)
    assert task_month(seed, PRICES) == pytest.approx((0.25 * 0.04048 + 0.5 * 0.004445) * HOURS)
    dev = worker_shape(declared(evaluated("dev")))
    assert dev.spot and not dev.arm
    assert task_month(dev, PRICES) == pytest.approx(task_month(seed, PRICES) * 0.30)
    prod = worker_shape(declared(evaluated("prod")))
    assert prod.arm and (prod.tasks, prod.max_tasks) == (2, 4)
    assert task_month(prod, PRICES) == pytest.approx((1 * 0.03238 + 2 * 0.00356) * HOURS)


def test_seed_pays_for_one_nat_gateway_and_its_address():
    items = items_by_name(estimate(declared(evaluated_seed()), PRICES))
    assert items["NAT gateway hours"].monthly == pytest.approx(HOURS * 0.045)
    assert items["Public IPv4 address hours"].quantity == HOURS
    assert "Container Insights metrics" not in items


def test_dev_pays_for_its_workers_public_address_and_no_nat():
    items = items_by_name(estimate(declared(evaluated("dev")), PRICES))
    assert "NAT gateway hours" not in items
    assert items["Public IPv4 address hours"].quantity == HOURS  # the one worker task's IP


def test_metric_math_alarm_is_billed_per_metric_it_reads():
    items = items_by_name(estimate(declared(evaluated("prod")), PRICES))
    # CPU, memory and dead-letter-queue alarms, plus running-below-desired reading two metrics.
    assert items["CloudWatch alarm metrics"].quantity == 5


def test_autoscaling_prices_the_minimum_and_shows_the_maximum_as_ceiling():
    prod = estimate(declared(evaluated("prod")), PRICES)
    per_task = task_month(worker_shape(declared(evaluated("prod"))), PRICES)
    assert prod.ceiling == pytest.approx(prod.total + 2 * per_task, abs=0.01)


def test_total_is_the_sum_of_its_items():
    for evaluation in (evaluated("dev"), evaluated("prod"), evaluated_seed()):
        cost = estimate(declared(evaluation), PRICES)
        assert cost.total == pytest.approx(sum(i.monthly for i in cost.items), abs=0.01)
        assert all(i.monthly == pytest.approx(i.quantity * i.unit_price, rel=1e-3) for i in cost.items)


def test_seed_stack_file_is_the_seed_architecture_at_devs_size():
    seed = load_stack_config(stack_file=ROOT / "examples" / "Pulumi.seed.yaml")
    dev = load_stack_config("dev")
    key = "prefect-ecs-worker:{}".format
    assert (seed[key("availabilityZoneCount")], seed[key("natGateways")]) == ("2", "single")
    assert (seed[key("capacityProvider")], seed[key("cpuArchitecture")]) == ("FARGATE", "X86_64")
    assert (seed[key("workerCpu")], seed[key("workerMemory")], seed[key("workerCount")]) == (
        dev[key("workerCpu")], dev[key("workerMemory")], "1")


def test_dev_costs_at_most_a_quarter_of_the_seed_at_the_same_posture():
    dev, seed = evaluated("dev"), evaluated_seed()
    dev_cost = estimate(declared(dev), PRICES).total
    seed_cost = estimate(declared(seed), PRICES).total
    assert dev_cost <= 0.25 * seed_cost
    # Same posture: no inbound rule anywhere, the key in Secrets Manager, not in the environment.
    for evaluation in (dev, seed):
        assert all(sg.inputs["ingress"] == []
                   for sg in evaluation.of_type("aws:ec2/securityGroup:SecurityGroup"))
        assert evaluation.of_type("aws:secretsmanager/secret:Secret")


# --- Cost per 1,000 flow runs ----------------------------------------------------------------

def test_flow_run_shape_is_the_pools_default_size_and_capacity_provider():
    defaults = load_stack_config("dev")
    dev = flow_run_shape(evaluated("dev").exports)
    assert dev.vcpu == int(defaults["prefect-ecs-worker:flowRunCpu"]) / 1024
    assert dev.memory_gb == int(defaults["prefect-ecs-worker:flowRunMemory"]) / 1024
    assert dev.spot
    assert not flow_run_shape(evaluated_seed().exports).spot


def test_flow_run_shape_follows_an_overridden_size():
    shape = flow_run_shape(evaluated("dev", flowRunCpu="1024", flowRunMemory="4096").exports)
    assert (shape.vcpu, shape.memory_gb) == (1, 4)


def test_a_flow_run_task_is_billed_its_minutes_at_list_price_with_the_fargate_minimum():
    on_demand = FlowRunShape(vcpu=0.5, memory_gb=1, spot=False)
    hourly = 0.5 * 0.04048 + 1 * 0.004445
    assert flow_run_task_cost(on_demand, PRICES) == pytest.approx(hourly * FLOW_RUN_MINUTES / 60)
    assert flow_run_task_cost(on_demand, PRICES, minutes=10) == pytest.approx(hourly / 6)
    assert flow_run_task_cost(on_demand, PRICES, minutes=0.1) == pytest.approx(hourly / 60)
    spot = FlowRunShape(vcpu=0.5, memory_gb=1, spot=True)
    assert flow_run_task_cost(spot, PRICES) == pytest.approx(
        flow_run_task_cost(on_demand, PRICES) * 0.30)


def test_per_thousand_runs_spreads_the_month_over_the_stated_volume():
    shape = FlowRunShape(vcpu=0.5, memory_gb=1, spot=False)
    volume = PRICES.assume("flow_runs_per_month")
    assert volume > 0
    cost = per_thousand_runs(73.0, shape, PRICES)
    assert cost.standing == pytest.approx(73.0 / volume * 1000, abs=0.005)
    assert cost.tasks == pytest.approx(flow_run_task_cost(shape, PRICES) * 1000, abs=0.005)
    assert cost.total == pytest.approx(cost.standing + cost.tasks)


def test_every_stack_and_the_seed_has_a_cost_per_thousand_runs():
    figures = stack_costs(PRICES, evaluated)
    assert set(figures) == {"seed", *stack_names()} and len(figures) > 1
    for stack, cost in figures.items():
        assert cost.per_1000.standing > 0 and cost.per_1000.tasks > 0, stack
        assert cost.per_1000.standing == pytest.approx(
            cost.monthly / PRICES.assume("flow_runs_per_month") * 1000, abs=0.005), stack


def test_the_seed_and_cloud_stacks_are_marked_as_needing_a_prefect_plan():
    figures = stack_costs(PRICES, evaluated)
    assert figures["seed"].cloud_plan and figures["dev"].cloud_plan
    assert not figures["selfhosted-dev"].cloud_plan and not figures["selfhosted-prod"].cloud_plan


def test_make_cost_prints_the_cost_per_thousand_runs_beside_the_monthly_figure(capsys):
    cost_main(evaluated)
    out = capsys.readouterr().out
    figures = stack_costs(PRICES, evaluated)
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:2 + len(figures)]}
    for stack, cost in figures.items():
        assert rows[stack][1] == f"${cost.monthly:.2f}", stack
        assert rows[stack][3] == f"${cost.per_1000.total:.2f}", stack
    assert "paid Prefect Cloud plan" in out
