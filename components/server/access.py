"""How people reach the server's UI and API: an Application Load Balancer, when there is one.

- `serverAccess: internal` (default): no public endpoint at all. `single` has no load balancer
  (people use `make ui`: an SSM port forward through ECS Exec to the server task); `ha` has an
  internal ALB in front of its API tasks, HTTP on port 80 from the worker's, the flow runs' and
  the server's security groups only (`internal_client_security_group_ids`), not the VPC range.
- `serverAccess: public`: an internet-facing ALB in the public subnets. HTTPS only on 443 with a
  TLS 1.3/1.2 policy (`TLS_POLICY`); port 80 only answers with a redirect to HTTPS. Its security
  group admits `serverAllowedCidrs` and nothing else. The certificate is `serverCertificateArn`, or
  one the stack issues for `serverDomainName` and validates by DNS in `serverHostedZoneId` (which
  also gets an alias record to the ALB). Basic auth stays on: the ALB forwards the Authorization
  header to Prefect.

Every request is logged to the stack's access-log bucket (`alb/`, SSE-S3: ELB writes to no
other kind of bucket); `serverLbDeletionProtection` turns on deletion protection (prod).

The target group checks `/api/ready` (readiness: it checks the database) and drops invalid
headers; the idle timeout is 60 s, below the server's keep-alive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.config.reader import NAMESPACE
from components.platform.access_logs import ALB_PREFIX as ACCESS_LOG_PREFIX
from components.server.server import LB_IDLE_TIMEOUT_SECONDS
from components.config.server import physical_name

TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
READINESS_PATH = "/api/ready"


@dataclass(frozen=True)
class AccessArgs:
    prefix: str
    public: bool
    vpc_id: pulumi.Input[str]
    # Internal: the groups admitted on port 80, by role (worker, flow runs, server).
    internal_client_security_group_ids: Mapping[str, pulumi.Input[str]]
    subnet_ids: pulumi.Input[Sequence[str]]
    server_security_group_id: pulumi.Input[str]
    port: int
    allowed_cidrs: Sequence[str]
    domain_name: Optional[str]
    hosted_zone_id: Optional[str]
    certificate_arn: Optional[str]
    tags: Mapping[str, str]
    # The stack's access-log bucket (components/platform/access_logs.py) and what must exist before ELB
    # checks it may write there (the bucket policy).
    access_log_bucket: pulumi.Input[str]
    access_log_ready: pulumi.Resource
    deletion_protection: bool


class ServerAccess(pulumi.ComponentResource):
    load_balancer: aws.lb.LoadBalancer
    target_group: aws.lb.TargetGroup
    security_group: aws.ec2.SecurityGroup
    # ECS refuses a service whose target group no listener uses yet: services depend on these.
    listeners: list[aws.lb.Listener]
    url: pulumi.Output[str]

    def __init__(self, name: str, args: AccessArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(f"{NAMESPACE}:index:ServerAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        listen_ports = (443, 80) if args.public else (80,)

        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            description=("Prefect server ALB: HTTPS (and the redirect) from the allowed networks"
                         if args.public else
                         "Prefect server internal ALB: HTTP from the worker, flow runs, server"),
            vpc_id=args.vpc_id,
            ingress=[aws.ec2.SecurityGroupIngressArgs(
                description=f"TCP {port} in", protocol="tcp", from_port=port, to_port=port,
                cidr_blocks=list(args.allowed_cidrs)) for port in listen_ports] if args.public
            else [aws.ec2.SecurityGroupIngressArgs(
                description=f"TCP 80 in from the {role}", protocol="tcp", from_port=80,
                to_port=80, security_groups=[group_id])
                for role, group_id in args.internal_client_security_group_ids.items()],
            egress=[aws.ec2.SecurityGroupEgressArgs(
                description="to the Prefect server tasks", protocol="tcp", from_port=args.port,
                to_port=args.port, security_groups=[args.server_security_group_id])],
            tags={**tags, "Name": f"{name}-alb"},
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-to-server",
            security_group_id=args.server_security_group_id,
            referenced_security_group_id=self.security_group.id,
            ip_protocol="tcp", from_port=args.port, to_port=args.port,
            description="Prefect API from its load balancer",
            tags=tags,
            opts=child,
        )
        self.load_balancer = aws.lb.LoadBalancer(
            f"{name}-alb",
            name=_lb_name(args.prefix, "alb"),
            load_balancer_type="application",
            internal=not args.public,
            subnets=args.subnet_ids,
            security_groups=[self.security_group.id],
            idle_timeout=LB_IDLE_TIMEOUT_SECONDS,
            drop_invalid_header_fields=True,
            # Every request, its client and its answer (checkov CKV_AWS_91).
            access_logs=aws.lb.LoadBalancerAccessLogsArgs(
                bucket=args.access_log_bucket, prefix=ACCESS_LOG_PREFIX, enabled=True),
            enable_deletion_protection=args.deletion_protection,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.access_log_ready]),
        )
        self.target_group = aws.lb.TargetGroup(
            f"{name}-targets",
            name=_lb_name(args.prefix, "api"),
            port=args.port,
            protocol="HTTP",
            target_type="ip",
            vpc_id=args.vpc_id,
            deregistration_delay=30,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                path=READINESS_PATH, matcher="200", interval=15, timeout=5,
                healthy_threshold=2, unhealthy_threshold=3),
            tags=tags,
            opts=child,
        )
        forward = [aws.lb.ListenerDefaultActionArgs(type="forward",
                                                    target_group_arn=self.target_group.arn)]
        if not args.public:
            self.listeners = [aws.lb.Listener(
                f"{name}-http", load_balancer_arn=self.load_balancer.arn, port=80,
                protocol="HTTP", default_actions=forward, tags=tags, opts=child)]
            self.url = pulumi.Output.concat("http://", self.load_balancer.dns_name)
        else:
            certificate_arn = self._certificate(name, args, tags)
            self.listeners = [aws.lb.Listener(
                f"{name}-https", load_balancer_arn=self.load_balancer.arn, port=443,
                protocol="HTTPS", ssl_policy=TLS_POLICY, certificate_arn=certificate_arn,
                default_actions=forward, tags=tags, opts=child)]
            aws.lb.Listener(
                f"{name}-http-redirect", load_balancer_arn=self.load_balancer.arn, port=80,
                protocol="HTTP",
                default_actions=[aws.lb.ListenerDefaultActionArgs(
                    type="redirect", redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                        protocol="HTTPS", port="443", status_code="HTTP_301"))],
                tags=tags, opts=child)
            if args.hosted_zone_id is not None:
                aws.route53.Record(
                    f"{name}-alias", zone_id=args.hosted_zone_id, name=args.domain_name,
                    type="A",
                    aliases=[aws.route53.RecordAliasArgs(
                        name=self.load_balancer.dns_name, zone_id=self.load_balancer.zone_id,
                        evaluate_target_health=True)],
                    opts=child)
            self.url = pulumi.Output.from_input(f"https://{args.domain_name}")

        self.register_outputs({"url": self.url, "dns_name": self.load_balancer.dns_name})

    def _certificate(self, name: str, args: AccessArgs,
                     tags: Mapping[str, str]) -> pulumi.Input[str]:
        if args.certificate_arn is not None:
            return args.certificate_arn
        certificate = aws.acm.Certificate(
            f"{name}-certificate", domain_name=args.domain_name, validation_method="DNS",
            tags=dict(tags), opts=pulumi.ResourceOptions(parent=self))
        option = certificate.domain_validation_options[0]
        record = aws.route53.Record(
            f"{name}-certificate-validation",
            zone_id=args.hosted_zone_id,
            name=option.resource_record_name,
            type=option.resource_record_type,
            records=[option.resource_record_value],
            ttl=60,
            allow_overwrite=True,
            opts=pulumi.ResourceOptions(parent=certificate))
        validation = aws.acm.CertificateValidation(
            f"{name}-certificate-validated",
            certificate_arn=certificate.arn,
            validation_record_fqdns=[record.fqdn],
            opts=pulumi.ResourceOptions(parent=certificate))
        return validation.certificate_arn


def _lb_name(prefix: str, role: str) -> str:
    """ALB and target group names: 32 characters at most."""
    return physical_name(prefix, role, 32)
