"""Replay of the public server's certificate (ACM, DNS validation) and its Route 53 records into
moto, with the checks those APIs make and moto skips. Registers into `testbed.replay.core.HANDLERS`.

- The hosted zone is the user's (`serverHostedZoneId`), not the stack's: the replay creates a
  stand-in zone for the record's domain and maps the declared id to it, as it maps AWS-managed
  policies to stand-ins.
- Route 53 (ChangeResourceRecordSets): a record's name must lie inside its zone's domain; an
  alias record carries no TTL and no values, any other record needs both.
- ACM: a DNS-validated certificate is issued once the CNAME it names exists; the validation
  resource (`CertificateValidation`) must list that record's FQDN, or `pulumi up` waits for
  issuance until it times out.
"""

from __future__ import annotations

from typing import Any

from tools.mock_engine import Declared
from testbed.replay.core import HANDLERS, Inputs, Replay, ReplayError, aws_tags

CERTIFICATE = "aws:acm/certificate:Certificate"


def certificate(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    method = inputs.get("validationMethod")
    if method not in ("DNS", "EMAIL"):
        raise ReplayError(resource, f"validationMethod {method!r} is not DNS or EMAIL")
    acm = replay.client("acm")
    request: dict[str, Any] = {"DomainName": inputs.require("domainName"),
                               "ValidationMethod": method}
    if inputs.get("subjectAlternativeNames"):
        request["SubjectAlternativeNames"] = inputs.get("subjectAlternativeNames")
    tags = aws_tags(inputs.get("tags"))
    if tags:
        request["Tags"] = tags
    inputs.engine_side("keyAlgorithm", "options")
    arn = acm.request_certificate(**request)["CertificateArn"]
    details = acm.describe_certificate(CertificateArn=arn)["Certificate"]
    records = [o["ResourceRecord"] for o in details.get("DomainValidationOptions", [])
               if o.get("ResourceRecord")]
    replay.map(resource.outputs.get("arn"), arn)
    replay.map(resource.id, arn)
    for declared, real in zip(resource.outputs.get("domainValidationOptions") or [], records,
                              strict=False):
        replay.map(declared.get("resourceRecordName"), real["Name"])
        replay.map(declared.get("resourceRecordValue"), real["Value"])
    return {"arn": arn, "validation_records": records, "domain": request["DomainName"]}


def certificate_validation(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    arn = inputs.require("certificateArn")
    created = next((c for (t, _), c in replay.created.items()
                    if t == CERTIFICATE and c.get("arn") == arn), None)
    if created is None:
        raise ReplayError(resource, f"validates {arn}, which this stack did not request")
    wanted = {r["Name"].rstrip(".") for r in created["validation_records"]}
    given = {f.rstrip(".") for f in inputs.get("validationRecordFqdns") or []}
    if wanted and not wanted <= given:
        raise ReplayError(resource, f"validation records {sorted(given)} miss {sorted(wanted)}: "
                                    f"the certificate would never be issued")
    return {"certificate_arn": arn}


def _zone(replay: Replay, resource: Declared, zone_id: str, name: str) -> tuple[str, str]:
    """The moto zone standing in for the user's `zone_id`, made for `name`'s parent domain."""
    route53 = replay.client("route53")
    real = replay.ids.get(zone_id)
    if real is None:
        domain = ".".join(name.rstrip(".").split(".")[-2:]) + "."
        real = route53.create_hosted_zone(Name=domain, CallerReference=f"stand-in-{zone_id}")[
            "HostedZone"]["Id"].split("/")[-1]
        replay.map(zone_id, real)
    zone_name = route53.get_hosted_zone(Id=real)["HostedZone"]["Name"]
    return real, zone_name


def record(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    name = inputs.require("name")
    zone_id, zone_name = _zone(replay, resource, inputs.require("zoneId"), name)
    fqdn = name.rstrip(".") + "."
    if not (fqdn == zone_name or fqdn.endswith("." + zone_name)):
        raise ReplayError(resource, f"InvalidChangeBatch: {fqdn} is not permitted in zone "
                                    f"{zone_name}")
    aliases = inputs.get("aliases") or []
    ttl, values = inputs.integer("ttl"), inputs.get("records") or []
    record_set: dict[str, Any] = {"Name": fqdn, "Type": inputs.require("type")}
    if aliases:
        if ttl is not None or values:
            raise ReplayError(resource, "InvalidChangeBatch: an alias record has no TTL or values")
        (alias,) = aliases
        record_set["AliasTarget"] = {"HostedZoneId": alias["zoneId"], "DNSName": alias["name"],
                                     "EvaluateTargetHealth": bool(alias["evaluateTargetHealth"])}
    else:
        if ttl is None or not values:
            raise ReplayError(resource, "InvalidChangeBatch: a record needs a TTL and values")
        record_set.update(TTL=ttl, ResourceRecords=[{"Value": v} for v in values])
    action = "UPSERT" if inputs.get("allowOverwrite") else "CREATE"
    replay.client("route53").change_resource_record_sets(
        HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": action,
                                                        "ResourceRecordSet": record_set}]})
    replay.map(resource.outputs.get("fqdn"), fqdn.rstrip("."))
    return {"zone_id": zone_id, "fqdn": fqdn.rstrip("."), "record": record_set}


HANDLERS.update({
    CERTIFICATE: certificate,
    "aws:acm/certificateValidation:CertificateValidation": certificate_validation,
    "aws:route53/record:Record": record,
})
