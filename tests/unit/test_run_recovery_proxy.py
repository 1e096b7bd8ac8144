"""The fault proxy of the burst harness (testbed/fault_proxy.py): botocore reads its refusals as
the AWS errors they stand for, and it clocks each RunTask with its flow run."""

import json
from http.server import BaseHTTPRequestHandler

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from testbed.fault_proxy import QUEUE_MISSING, THROTTLED, UNAVAILABLE, FaultProxy
from tests.support.loopback_http import serving


class _Ecs(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"tasks": [{"taskArn": "arn:aws:ecs:us-east-1:1:task/c/t1"}],
                           "failures": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def proxy():
    with serving(_Ecs, threads=True) as upstream:
        proxy = FaultProxy(upstream)
        yield proxy
        proxy.stop()


def client(proxy, service):
    return boto3.client(service, endpoint_url=proxy.url, region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="x",
                        config=Config(retries={"mode": "legacy", "total_max_attempts": 1}))


def run_task(ecs, run_id="run-1"):
    return ecs.run_task(cluster="c", taskDefinition="td", overrides={"containerOverrides": [{
        "name": "prefect", "environment": [{"name": "PREFECT__FLOW_RUN_ID", "value": run_id}]}]})


@pytest.mark.parametrize("answer, code", [(THROTTLED, "ThrottlingException"),
                                          (UNAVAILABLE, "ServiceUnavailableException")])
def test_a_refused_runtask_is_the_aws_error_botocore_retries(proxy, answer, code):
    ecs = client(proxy, "ecs")
    proxy.fail(".RunTask", 60, answer)
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        run_task(ecs)
    assert refused.value.response["Error"]["Code"] == code
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == answer[0]
    # What botocore's retry handlers key on (legacy: throttling codes and 5xx).
    assert code == "ThrottlingException" or answer[0] >= 500
    assert proxy.refused == {"AmazonEC2ContainerServiceV20141113.RunTask": 1}


def test_runtask_is_clocked_with_its_flow_run_and_other_calls_pass(proxy):
    ecs = client(proxy, "ecs")
    proxy.fail(".RunTask", 60, THROTTLED, after=3600)  # not yet
    assert run_task(ecs, "run-7")["tasks"][0]["taskArn"].endswith("/t1")
    (call,) = proxy.run_tasks
    assert (call.flow_run_id, call.status, call.task_arns) == (
        "run-7", 200, ["arn:aws:ecs:us-east-1:1:task/c/t1"])


def test_a_missing_queue_is_what_sqs_says(proxy):
    proxy.fail("AmazonSQS.", 60, QUEUE_MISSING)
    with pytest.raises(botocore.exceptions.ClientError) as missing:
        client(proxy, "sqs").get_queue_url(QueueName="q")
    assert missing.value.response["Error"]["Code"] in (
        "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue")
