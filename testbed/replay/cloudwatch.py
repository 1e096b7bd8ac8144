"""CloudWatch metric alarms, metric math included."""

from __future__ import annotations

from typing import Any, Optional

from tools.mock_engine import Declared
from testbed.replay import aws_rules
from testbed.replay.core import HANDLERS, Inputs, Replay, _physical_name, aws_tags, pascal


def _dimensions(dimensions: Optional[dict[str, str]]) -> list[dict[str, str]]:
    return [{"Name": k, "Value": v} for k, v in (dimensions or {}).items()]


def _metric_queries(resource: Declared, queries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Metric math as PutMetricAlarm takes it, with the checks AWS makes and moto does not."""
    ids = [q.get("id") for q in queries]
    aws_rules.alarm_metric_queries_return_one(resource, queries)
    metrics = []
    for query in queries:
        metric: dict[str, Any] = {"Id": query["id"], "ReturnData": bool(query.get("returnData"))}
        for key, api_key in (("label", "Label"), ("accountId", "AccountId")):
            if query.get(key) is not None:
                metric[api_key] = query[key]
        if query.get("period") is not None:
            metric["Period"] = int(query["period"])
        if query.get("expression") is not None:
            aws_rules.alarm_expression_reads_defined_ids(resource, query["expression"], ids)
            metric["Expression"] = query["expression"]
        stat = query.get("metric")
        if stat is not None:
            aws_rules.alarm_period(resource, int(stat["period"]))
            metric["MetricStat"] = {
                "Metric": {"Namespace": stat.get("namespace"), "MetricName": stat["metricName"],
                           "Dimensions": _dimensions(stat.get("dimensions"))},
                "Period": int(stat["period"]), "Stat": stat["stat"],
                **({"Unit": stat["unit"]} if stat.get("unit") else {}),
            }
        metrics.append(metric)
    return metrics


SINGLE_METRIC_INPUTS = ("namespace", "metricName", "dimensions", "statistic", "extendedStatistic",
                        "period", "unit")


def metric_alarm(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    evaluation_periods = inputs.integer("evaluationPeriods")
    datapoints = inputs.integer("datapointsToAlarm")
    request: dict[str, Any] = {
        "AlarmName": _physical_name(resource, inputs),
        "EvaluationPeriods": evaluation_periods,
        "ComparisonOperator": inputs.require("comparisonOperator"),
        "Tags": aws_tags(inputs.get("tags")),
    }
    inputs.copy(request, {**pascal("alarmDescription", "actionsEnabled", "alarmActions",
                                   "insufficientDataActions", "threshold", "thresholdMetricId",
                                   "treatMissingData"),
                          "okActions": "OKActions",
                          "evaluateLowSampleCountPercentiles": "EvaluateLowSampleCountPercentile"})
    if datapoints is not None:
        aws_rules.alarm_datapoints(resource, datapoints, evaluation_periods)
        request["DatapointsToAlarm"] = datapoints
    queries = inputs.get("metricQueries")
    single = [key for key in SINGLE_METRIC_INPUTS if inputs.get(key) is not None]
    aws_rules.alarm_one_metric_source(resource, bool(queries), single)
    if queries:
        request["Metrics"] = _metric_queries(resource, queries)
    else:
        period = inputs.integer("period")
        aws_rules.alarm_period(resource, period)
        inputs.copy(request, pascal("namespace", "metricName", "statistic", "extendedStatistic",
                                    "unit"))
        request.update(Dimensions=_dimensions(inputs.get("dimensions")), Period=period)
    aws_rules.alarm_threshold(resource, request)
    replay.client("cloudwatch").put_metric_alarm(
        **{k: v for k, v in request.items() if v is not None})
    return {"name": request["AlarmName"]}


HANDLERS.update({
    "aws:cloudwatch/metricAlarm:MetricAlarm": metric_alarm,
})
