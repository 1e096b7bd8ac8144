"""`pulumi preview --policy-pack policies`: the stack's security invariants, enforced."""

from pulumi_policy import PolicyPack

from worker_pack import PACK_NAME, policies

PolicyPack(name=PACK_NAME, policies=policies())
