"""The work pool the stack declares: its template defaults put flow runs in this stack."""

import base64
import copy
import http.server
import json

import dill
import pytest

from components.prefect.job_template import FLOW_RUN_STREAM_PREFIX, upstream_template
from components.prefect.work_pool import ATTEMPTS, PrefectApiError, WorkPoolProvider
from components.platform.fargate import JSON_LOGGING_ENVIRONMENT
from tests.support.harness import (
    ACCOUNT, PROJECT, REGION, TEST_API_KEY, WORK_POOL, evaluate_stack, pool_template, runs_server,
    stack_names, worker_container,
)
from tests.support.loopback_http import serving


def defaults(evaluation):
    template = pool_template(evaluation)
    return {name: spec.get("default") for name, spec in template["variables"]["properties"].items()}


@pytest.mark.parametrize("stack", stack_names())
def test_pool_defaults_put_flow_runs_in_this_stack(evaluated, stack):
    evaluation = evaluated(stack)
    variables = defaults(evaluation)
    exports = evaluation.exports
    assert variables["cluster"] == f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{PROJECT}-{stack}"
    assert variables["cluster"] == exports["clusterArn"]
    assert variables["vpc_id"] == exports["vpcId"]
    network = variables["network_configuration"]
    assert network["subnets"] == exports["workerSubnetIds"]
    assert network["securityGroups"] == [exports["flowRunSecurityGroupId"]]
    assert network["assignPublicIp"] == ("ENABLED" if exports["workerAssignsPublicIp"] else "DISABLED")
    assert variables["execution_role_arn"] == exports["flowRunExecutionRoleArn"]
    assert variables["task_role_arn"] == exports["flowRunTaskRoleArn"]
    # A stack's own server takes the basic-auth string; an external API here, the key.
    key, other = "prefect_api_key_secret_arn", "prefect_api_auth_string_secret_arn"
    if runs_server(stack):
        key, other = other, key
    assert variables[key] == exports["credentialSecretArn"]
    assert variables[other] is None


def test_flow_runs_of_a_stack_without_nat_get_public_subnets_and_ip(evaluated):
    evaluation = evaluated("dev")
    network = defaults(evaluation)["network_configuration"]
    assert network["assignPublicIp"] == "ENABLED"
    assert network["subnets"] == evaluation.exports["publicSubnetIds"]


def test_flow_runs_of_a_stack_with_nat_stay_private(evaluated):
    evaluation = evaluated("prod")
    network = defaults(evaluation)["network_configuration"]
    assert network["assignPublicIp"] == "DISABLED"
    assert network["subnets"] == evaluation.exports["privateSubnetIds"]
    assert not set(network["subnets"]) & set(evaluation.exports["publicSubnetIds"])


@pytest.mark.parametrize("stack", stack_names())
def test_flow_run_logs_go_to_the_stack_log_group(evaluated, stack):
    evaluation = evaluated(stack)
    variables = defaults(evaluation)
    assert variables["configure_cloudwatch_logs"] is True
    options = variables["cloudwatch_logs_options"]
    assert options["awslogs-group"] == evaluation.exports["logGroupName"] == f"/ecs/{PROJECT}-{stack}"
    assert options["awslogs-region"] == REGION
    assert options["awslogs-stream-prefix"] == FLOW_RUN_STREAM_PREFIX
    assert options["awslogs-create-group"] == "false"


@pytest.mark.parametrize("stack", stack_names())
def test_flow_runs_reuse_task_definitions_and_use_the_stack_capacity(evaluated, stack):
    evaluation = evaluated(stack)
    variables = defaults(evaluation)
    service = evaluation.one("aws:ecs/service:Service", "worker-service")
    assert variables["match_latest_revision_in_family"] is True
    [strategy] = variables["capacity_provider_strategy"]
    assert strategy["capacityProvider"] == service.inputs["capacityProviderStrategies"][0]["capacityProvider"]


def test_flow_run_size_and_image_come_from_config():
    variables = defaults(evaluate_stack(
        "dev", flowRunCpu="1024", flowRunMemory="4096", flowRunImage="example.com/flows:1.2.3"))
    assert (variables["cpu"], variables["memory"], variables["image"]) == (
        1024, 4096, "example.com/flows:1.2.3")


def test_an_auth_string_is_referenced_by_its_own_variable():
    evaluation = evaluate_stack(
        "staging", prefectApiUrl="https://prefect.example.com/api",
        prefectApiKey="", prefectApiAuthStringSecretArn=(
            f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prefect-auth-Xy12Ab"))
    variables = defaults(evaluation)
    assert variables["prefect_api_auth_string_secret_arn"].endswith(":secret:prefect-auth-Xy12Ab")
    assert variables["prefect_api_key_secret_arn"] is None


def test_template_is_prefect_aws_own_with_container_memory_and_json_logging_added(evaluated):
    template = copy.deepcopy(evaluated("dev").one(WORK_POOL).inputs["base_job_template"])
    upstream = upstream_template()
    container = template["job_configuration"]["task_definition"]["containerDefinitions"][0]
    assert container.pop("memory") == "{{ memory }}"
    assert container.pop("environment") == [
        {"name": name, "value": value} for name, value in JSON_LOGGING_ENVIRONMENT]
    assert template["job_configuration"] == upstream["job_configuration"]
    assert set(template["variables"]["properties"]) == set(upstream["variables"]["properties"])


def test_pool_is_named_and_typed_from_config(evaluated):
    evaluation = evaluated("staging", workPoolConcurrencyLimit="7")
    pool = evaluation.one(WORK_POOL)
    assert pool.inputs["name"] == "ecs-staging" == evaluation.exports["workPoolName"]
    assert pool.inputs["type"] == "ecs"
    assert pool.inputs["concurrency_limit"] == 7
    assert pool.inputs["api_url"].startswith("https://api.prefect.cloud/api/accounts/")


def test_no_concurrency_limit_by_default(evaluated):
    assert evaluated("dev").one(WORK_POOL).inputs.get("concurrency_limit") is None


def test_the_credential_is_nowhere_in_the_pool_resource(evaluated):
    pool = evaluated("dev").one(WORK_POOL)
    assert TEST_API_KEY not in json.dumps(pool.inputs)
    provider = dill.loads(base64.b64decode(pool.inputs["__provider"]))
    assert vars(provider) == {}
    assert TEST_API_KEY.encode() not in base64.b64decode(pool.inputs["__provider"])


def test_manage_work_pool_false_declares_no_pool(evaluated):
    evaluation = evaluated("dev", manageWorkPool="false")
    assert evaluation.of_type(WORK_POOL) == []
    assert evaluation.exports["workPoolManaged"] is False
    # The exported variables still tell the pool's owner what to set.
    assert evaluation.exports["workPoolJobVariables"]["cluster"] == evaluation.exports["clusterArn"]


@pytest.mark.parametrize("manage", ["true", "false"])
def test_worker_never_creates_a_missing_pool(evaluated, manage):
    evaluation = evaluated("dev", manageWorkPool=manage)
    container = worker_container(evaluation)
    assert "--no-create-pool-if-not-found" in container["command"]
    assert container["command"][container["command"].index("--pool") + 1] == "ecs-dev"


class _BusyPrefect(http.server.BaseHTTPRequestHandler):
    """Answers 503 (as a self-hosted server on SQLite does while the database is locked) a set
    number of times, then the pool."""

    busy_answers = 0
    requests = 0

    def do_POST(self):  # noqa: N802 (http.server's name)
        type(self).requests += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        if type(self).requests <= type(self).busy_answers:
            self.send_response(503)
            self.send_header("Retry-After", "0")
            self.end_headers()
            return
        body = json.dumps([{"id": "pool-id", "name": "busy-pool", "type": "ecs"}]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("busy_answers, found", [(2, True), (10, False)])
def test_provider_rides_out_a_busy_server_but_not_forever(busy_answers, found):
    _BusyPrefect.busy_answers, _BusyPrefect.requests = busy_answers, 0
    with serving(_BusyPrefect) as url:
        api_url = f"{url}/api"
        if found:
            assert WorkPoolProvider().read("pool-id", {"api_url": api_url, "name": "busy-pool"}).id \
                == "pool-id"
        else:
            with pytest.raises(PrefectApiError, match="failed with HTTP 503"):
                WorkPoolProvider().read("pool-id", {"api_url": api_url, "name": "busy-pool"})
    assert _BusyPrefect.requests == (busy_answers + 1 if found else ATTEMPTS)
