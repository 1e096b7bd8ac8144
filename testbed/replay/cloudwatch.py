"""CloudWatch metric alarms, metric math included."""

from __future__ import annotations

import re
from typing import Any, Optional

from tools.mock_engine import Declared
from testbed.replay.core import (
    HANDLERS, Inputs, Replay, ReplayError, _physical_name, aws_tags, pascal,
)


def _dimensions(dimensions: Optional[dict[str, str]]) -> list[dict[str, str]]:
    return [{"Name": k, "Value": v} for k, v in (dimensions or {}).items()]


def _check_alarm_period(resource: Declared, period: Optional[int]) -> None:
    if period is not None and period not in (10, 20, 30) and period % 60:
        raise ReplayError(resource, f"period {period} is not 10, 20, 30 or a multiple of 60, "
                                    f"the periods PutMetricAlarm accepts")


def _metric_queries(resource: Declared, queries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Metric math as PutMetricAlarm takes it, with the checks AWS makes and moto does not:
    exactly one query returns data, and an expression reads only ids the alarm defines."""
    ids = [q.get("id") for q in queries]
    returning = [q.get("id") for q in queries if q.get("returnData")]
    if len(returning) != 1:
        raise ReplayError(resource, f"ValidationError: exactly one metric query must return data, "
                                    f"{len(returning)} do ({returning})")
    metrics = []
    for query in queries:
        metric: dict[str, Any] = {"Id": query["id"], "ReturnData": bool(query.get("returnData"))}
        for key, api_key in (("label", "Label"), ("accountId", "AccountId")):
            if query.get(key) is not None:
                metric[api_key] = query[key]
        if query.get("period") is not None:
            metric["Period"] = int(query["period"])
        if query.get("expression") is not None:
            unknown = sorted(set(re.findall(r"\b[a-z][A-Za-z0-9_]*\b", query["expression"]))
                             - set(ids))
            if unknown:
                raise ReplayError(resource, f"ValidationError: expression "
                                            f"{query['expression']!r} reads {unknown}, which no "
                                            f"metric query of this alarm defines")
            metric["Expression"] = query["expression"]
        stat = query.get("metric")
        if stat is not None:
            _check_alarm_period(resource, int(stat["period"]))
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
        if evaluation_periods is not None and datapoints > evaluation_periods:
            raise ReplayError(resource, f"datapointsToAlarm {datapoints} exceeds "
                                        f"evaluationPeriods {evaluation_periods}")
        request["DatapointsToAlarm"] = datapoints
    queries = inputs.get("metricQueries")
    single = [key for key in SINGLE_METRIC_INPUTS if inputs.get(key) is not None]
    if queries and single:
        raise ReplayError(resource, f"InvalidParameterCombination: metricQueries with {single}; "
                                    f"an alarm reads one metric or a metric math expression")
    if queries:
        request["Metrics"] = _metric_queries(resource, queries)
    else:
        period = inputs.integer("period")
        _check_alarm_period(resource, period)
        inputs.copy(request, pascal("namespace", "metricName", "statistic", "extendedStatistic",
                                    "unit"))
        request.update(Dimensions=_dimensions(inputs.get("dimensions")), Period=period)
    if "Threshold" not in request and "ThresholdMetricId" not in request:
        raise ReplayError(resource, "declares neither threshold nor thresholdMetricId")
    replay.client("cloudwatch").put_metric_alarm(
        **{k: v for k, v in request.items() if v is not None})
    return {"name": request["AlarmName"]}


HANDLERS.update({
    "aws:cloudwatch/metricAlarm:MetricAlarm": metric_alarm,
})
