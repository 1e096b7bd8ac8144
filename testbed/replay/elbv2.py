"""Replay of the server's Application Load Balancer (load balancer, target group, listeners) into
moto, with the checks Elastic Load Balancing makes and moto skips. Registers into
`testbed.replay.core.HANDLERS`.

From the ELBv2 API reference and the ALB User Guide:
- an ALB needs subnets in at least two Availability Zones; its name is 1-32 letters, digits or
  hyphens, not starting `internal-` nor ending in a hyphen; its idle timeout is 1-4000 s;
- a target group behind an `awsvpc` ECS service has target type `ip`; its health check timeout is
  below its interval, thresholds 2-10, and a deregistration delay of 0-3600 s;
- an HTTPS listener needs a certificate and a security policy ELB offers; an HTTP listener takes
  neither; a redirect names HTTP_301 or HTTP_302.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tools.mock_engine import Declared
from testbed.replay.core import HANDLERS, Inputs, Replay, ReplayError, aws_tags

LB_NAME = re.compile(r"^(?!internal-)[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?$")
# The predefined policies ELB offers for HTTPS listeners (ALB User Guide, "Security policies").
SSL_POLICIES = {
    "ELBSecurityPolicy-TLS13-1-2-2021-06", "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Ext1-2021-06", "ELBSecurityPolicy-TLS13-1-2-Ext2-2021-06",
    "ELBSecurityPolicy-TLS13-1-3-2021-06", "ELBSecurityPolicy-TLS13-1-2-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-3-PQ-2025-09", "ELBSecurityPolicy-2016-08",
    "ELBSecurityPolicy-TLS-1-2-2017-01", "ELBSecurityPolicy-TLS-1-2-Ext-2018-06",
    "ELBSecurityPolicy-FS-1-2-Res-2020-10", "ELBSecurityPolicy-FS-1-2-2019-08",
}


def _name(resource: Declared, inputs: Inputs) -> str:
    name = inputs.get("name") or resource.outputs["name"][:32]
    if not LB_NAME.match(name):
        raise ReplayError(resource, f"ValidationError: name {name!r} (1-32 letters, digits, "
                                    f"hyphens; not internal-*, no trailing hyphen)")
    return name


def bucket_access_logs(replay: Replay, resource: Declared, logs: dict[str, Any]) -> None:
    """ELB checks the bucket when access logging is turned on: it exists, its default encryption
    is SSE-S3 (SSE-KMS is refused), and its policy lets ELB put objects under the prefix (ELB
    User Guide, "Access logs for your Application Load Balancer"; "Access Denied for bucket"
    otherwise)."""
    s3, bucket, prefix = replay.client("s3"), logs.get("bucket"), logs.get("prefix") or ""
    try:
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
            "Rules"]
        document = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except s3.exceptions.ClientError as error:
        raise ReplayError(resource, f"InvalidConfigurationRequest: access log bucket {bucket!r}: "
                                    f"{error.response['Error']['Code']}") from error
    if any(r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] != "AES256" for r in rules):
        raise ReplayError(resource, f"InvalidConfigurationRequest: {bucket!r} is not encrypted "
                                    "with SSE-S3, the only encryption ELB access logs support")
    wanted = f"arn:aws:s3:::{bucket}/{prefix + '/' if prefix else ''}AWSLogs/"
    if not any(s.get("Effect") == "Allow" and "s3:PutObject" in json.dumps(s.get("Action"))
               and any(str(r).startswith(wanted) for r in
                       (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]))
               for s in document.get("Statement", [])):
        raise ReplayError(resource, f"InvalidConfigurationRequest: Access Denied for bucket: "
                                    f"{bucket}. Please check S3bucket permission")


def load_balancer(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    kind = inputs.get("loadBalancerType") or "application"
    subnets = inputs.require("subnets")
    if kind == "application":
        zones = {s["AvailabilityZone"] for s in replay.client("ec2").describe_subnets(
            SubnetIds=subnets)["Subnets"]}
        if len(zones) < 2:
            raise ReplayError(resource, f"ValidationError: an Application Load Balancer needs "
                                        f"subnets in at least two AZs, got {sorted(zones)}")
    idle = inputs.integer("idleTimeout", 60)
    assert idle is not None  # a default is given
    if not 1 <= idle <= 4000:
        raise ReplayError(resource, f"ValidationError: idle timeout {idle} is outside 1-4000")
    elbv2 = replay.client("elbv2")
    balancer = elbv2.create_load_balancer(
        Name=_name(resource, inputs), Subnets=subnets,
        SecurityGroups=inputs.get("securityGroups") or [],
        Scheme="internal" if inputs.get("internal") else "internet-facing", Type=kind,
        IpAddressType=inputs.get("ipAddressType") or "ipv4",
        Tags=aws_tags(inputs.get("tags")))["LoadBalancers"][0]
    attributes = [{"Key": "idle_timeout.timeout_seconds", "Value": str(idle)}]
    for key, attribute in (("dropInvalidHeaderFields", "routing.http.drop_invalid_header_fields"
                            ".enabled"),
                           ("enableDeletionProtection", "deletion_protection.enabled"),
                           ("enableHttp2", "routing.http2.enabled")):
        if inputs.get(key) is not None:
            attributes.append({"Key": attribute, "Value": str(bool(inputs.get(key))).lower()})
    logs = inputs.get("accessLogs") or {}
    if logs.get("enabled"):
        bucket_access_logs(replay, resource, logs)
        attributes += [{"Key": "access_logs.s3.enabled", "Value": "true"},
                       {"Key": "access_logs.s3.bucket", "Value": logs["bucket"]},
                       {"Key": "access_logs.s3.prefix", "Value": logs.get("prefix") or ""}]
    elbv2.modify_load_balancer_attributes(LoadBalancerArn=balancer["LoadBalancerArn"],
                                          Attributes=attributes)
    replay.map(resource.id, balancer["LoadBalancerArn"])
    replay.map(resource.outputs.get("arn"), balancer["LoadBalancerArn"])
    replay.map(resource.outputs.get("dnsName"), balancer["DNSName"])
    replay.map(resource.outputs.get("zoneId"), balancer["CanonicalHostedZoneId"])
    return {"arn": balancer["LoadBalancerArn"], "dns_name": balancer["DNSName"],
            "scheme": balancer["Scheme"], "attributes": attributes}


def target_group(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    request: dict[str, Any] = {
        "Name": _name(resource, inputs), "Protocol": inputs.require("protocol"),
        "Port": inputs.integer("port"), "VpcId": inputs.require("vpcId"),
        "TargetType": inputs.get("targetType") or "instance",
        "Tags": aws_tags(inputs.get("tags")),
    }
    check = inputs.get("healthCheck") or {}
    interval, timeout = int(check.get("interval", 30)), int(check.get("timeout", 5))
    if timeout >= interval:
        raise ReplayError(resource, f"ValidationError: health check timeout {timeout} must be "
                                    f"below its interval {interval}")
    for key in ("healthyThreshold", "unhealthyThreshold"):
        if key in check and not 2 <= int(check[key]) <= 10:
            raise ReplayError(resource, f"ValidationError: {key} {check[key]} is outside 2-10")
    request.update(HealthCheckEnabled=bool(check.get("enabled", True)),
                   HealthCheckPath=check.get("path", "/"),
                   HealthCheckIntervalSeconds=interval, HealthCheckTimeoutSeconds=timeout,
                   HealthyThresholdCount=int(check.get("healthyThreshold", 5)),
                   UnhealthyThresholdCount=int(check.get("unhealthyThreshold", 2)),
                   Matcher={"HttpCode": check.get("matcher", "200")})
    if check.get("protocol"):
        request["HealthCheckProtocol"] = check["protocol"]
    delay = inputs.integer("deregistrationDelay", 300)
    assert delay is not None  # a default is given
    if not 0 <= delay <= 3600:
        raise ReplayError(resource, f"ValidationError: deregistration delay {delay}")
    elbv2 = replay.client("elbv2")
    group = elbv2.create_target_group(**request)["TargetGroups"][0]
    elbv2.modify_target_group_attributes(
        TargetGroupArn=group["TargetGroupArn"],
        Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": str(delay)}])
    replay.map(resource.id, group["TargetGroupArn"])
    replay.map(resource.outputs.get("arn"), group["TargetGroupArn"])
    return {"arn": group["TargetGroupArn"], "target_type": request["TargetType"],
            "health_check": check}


def _action(resource: Declared, action: dict[str, Any]) -> dict[str, Any]:
    kind = action["type"]
    out: dict[str, Any] = {"Type": kind}
    if kind == "forward":
        out["TargetGroupArn"] = action["targetGroupArn"]
    elif kind == "redirect":
        redirect = action["redirect"]
        if redirect["statusCode"] not in ("HTTP_301", "HTTP_302"):
            raise ReplayError(resource, f"ValidationError: redirect {redirect['statusCode']}")
        out["RedirectConfig"] = {k[0].upper() + k[1:]: v for k, v in redirect.items()}
    elif kind == "fixed-response":
        out["FixedResponseConfig"] = {k[0].upper() + k[1:]: v
                                      for k, v in action["fixedResponse"].items()}
    else:
        raise ReplayError(resource, f"listener action {kind!r} is not replayed")
    return out


def listener(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    protocol = inputs.require("protocol")
    certificate = inputs.get("certificateArn")
    policy = inputs.get("sslPolicy")
    if protocol == "HTTPS":
        if not certificate:
            raise ReplayError(resource, "ValidationError: an HTTPS listener needs a certificate")
        if policy not in SSL_POLICIES:
            raise ReplayError(resource, f"ValidationError: SSL policy {policy!r} is not one ELB "
                                        f"offers")
    elif certificate or policy:
        raise ReplayError(resource, f"ValidationError: a {protocol} listener takes no "
                                    f"certificate or SSL policy")
    request: dict[str, Any] = {
        "LoadBalancerArn": inputs.require("loadBalancerArn"), "Protocol": protocol,
        "Port": inputs.integer("port"), "Tags": aws_tags(inputs.get("tags")),
        "DefaultActions": [_action(resource, a) for a in inputs.require("defaultActions")],
    }
    if certificate:
        request.update(Certificates=[{"CertificateArn": certificate}], SslPolicy=policy)
    arn = replay.client("elbv2").create_listener(**request)["Listeners"][0]["ListenerArn"]
    replay.map(resource.id, arn)
    replay.map(resource.outputs.get("arn"), arn)
    return {"arn": arn, "protocol": protocol, "port": request["Port"],
            "actions": request["DefaultActions"], "ssl_policy": policy}


HANDLERS.update({
    "aws:lb/loadBalancer:LoadBalancer": load_balancer,
    "aws:lb/targetGroup:TargetGroup": target_group,
    "aws:lb/listener:Listener": listener,
})
