"""Replay of Cloud Map (the private DNS namespace and service the worker finds the server by)
into moto. Registers into `testbed.replay.core.HANDLERS`.

Cloud Map checks that moto skips (API reference, CreatePrivateDnsNamespace / CreateService):
a namespace name is a DNS name; a service's DNS records are of one routing policy, MULTIVALUE or
WEIGHTED, with A, AAAA, SRV or CNAME records, a CNAME only alone and only with WEIGHTED; TTLs of
0 to 2147483647 seconds. ECS registers `awsvpc` tasks by A record without a port.
"""

from __future__ import annotations

import re
from typing import Any

from tools.mock_engine import Declared
from testbed.replay.core import HANDLERS, Inputs, Replay, ReplayError, aws_tags

DNS_NAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                      r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def private_dns_namespace(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    name = inputs.require("name")
    if not DNS_NAME.match(name):
        raise ReplayError(resource, f"InvalidInput: namespace name {name!r} is not a DNS name")
    discovery = replay.client("servicediscovery")
    operation = discovery.create_private_dns_namespace(
        Name=name, Vpc=inputs.require("vpc"), Description=inputs.get("description") or "",
        Tags=aws_tags(inputs.get("tags")))["OperationId"]
    namespace_id = discovery.get_operation(OperationId=operation)["Operation"]["Targets"]["NAMESPACE"]
    namespace = discovery.get_namespace(Id=namespace_id)["Namespace"]
    replay.map(resource.id, namespace_id)
    replay.map(resource.outputs.get("arn"), namespace["Arn"])
    replay.map(resource.outputs.get("hostedZone"),
               namespace["Properties"]["DnsProperties"].get("HostedZoneId"))
    return {"id": namespace_id, "arn": namespace["Arn"], "name": name}


def discovery_service(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    dns = inputs.get("dnsConfig")
    request: dict[str, Any] = {"Name": inputs.require("name"), "Tags": aws_tags(inputs.get("tags"))}
    if inputs.get("description"):
        request["Description"] = inputs.get("description")
    namespace_id = inputs.get("namespaceId")
    if dns is not None:
        policy = dns.get("routingPolicy") or "MULTIVALUE"
        records = dns.get("dnsRecords") or []
        types = [r["type"] for r in records]
        if policy not in ("MULTIVALUE", "WEIGHTED"):
            raise ReplayError(resource, f"InvalidInput: routing policy {policy!r}")
        if not records or set(types) - {"A", "AAAA", "SRV", "CNAME"}:
            raise ReplayError(resource, f"InvalidInput: DNS record types {types}")
        if "CNAME" in types and (len(types) > 1 or policy != "WEIGHTED"):
            raise ReplayError(resource, "InvalidInput: a CNAME record stands alone, WEIGHTED")
        for record in records:
            if not 0 <= int(record["ttl"]) <= 2147483647:
                raise ReplayError(resource, f"InvalidInput: TTL {record['ttl']}")
        namespace_id = namespace_id or dns.get("namespaceId")
        request["DnsConfig"] = {"NamespaceId": dns["namespaceId"], "RoutingPolicy": policy,
                                "DnsRecords": [{"Type": r["type"], "TTL": int(r["ttl"])}
                                               for r in records]}
    if namespace_id:
        request["NamespaceId"] = namespace_id
    custom = inputs.get("healthCheckCustomConfig")
    if custom is not None:
        request["HealthCheckCustomConfig"] = {
            k[0].upper() + k[1:]: int(v) for k, v in custom.items() if v is not None}
    checks = inputs.get("healthCheckConfig")
    if checks is not None:
        request["HealthCheckConfig"] = {k[0].upper() + k[1:]: v for k, v in checks.items()}
    inputs.engine_side("forceDestroy")
    service = replay.client("servicediscovery").create_service(**request)["Service"]
    replay.map(resource.id, service["Id"])
    replay.map(resource.outputs.get("arn"), service["Arn"])
    return {"id": service["Id"], "arn": service["Arn"], "name": service["Name"]}


HANDLERS.update({
    "aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace": private_dns_namespace,
    "aws:servicediscovery/service:Service": discovery_service,
})
