"""A destroyed server stack's database comes back in another stack, on moto.

Stack A (the self-hosted dev stack with Pulumi.yaml's safe defaults: protection and a final
snapshot) is replayed as declared; `pulumi destroy` is then done as the provider does it: deletion
protection stops the delete until it is turned off, the instance is deleted with the declared final
snapshot and `deleteAutomatedBackups`, and the stack key, retained, stays enabled. Stack B, a new
stack with `serverDbRestoreSnapshot` naming that snapshot, is replayed into the same account: its
copy of the snapshot and its restored instance must be on B's own key, subnet group and security
group. Had A's key been deleted (scheduled, as destroy does with a key it does not retain), the
restore is refused: the reason the key is retained.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from components.config.server import RESTORED_FROM_TAG
from testbed.prefect_worker import deploy
from testbed.replay import Replay, ReplayError, real_exports
from tests.support.harness import Evaluation, RecordingMocks, evaluate
from tests.support.server_evaluations import server_config

pytestmark = pytest.mark.slow

DB = "aws:rds/instance:Instance"
SUBNET_GROUP = "aws:rds/subnetGroup:SubnetGroup"
COPY = "aws:rds/snapshotCopy:SnapshotCopy"


def kept_source() -> Evaluation:
    """The dev server stack as a team gets it without a word about its database: Pulumi.yaml's
    defaults (the dev stack file turns both off, so it says them here)."""
    return evaluate(server_config("selfhosted-dev", serverDbDeletionProtection="true",
                                  serverDbFinalSnapshot="true"), stack="restore-source")


def destroy_database(replayed: Replay, evaluation: Evaluation) -> str:
    """`pulumi destroy` of the database as the provider deletes it; the final snapshot's ARN."""
    declared = evaluation.one(DB).inputs
    rds = replayed.client("rds")
    identifier = declared["identifier"]
    with pytest.raises(ClientError, match="Cannot delete protected DB Instance"):
        rds.delete_db_instance(DBInstanceIdentifier=identifier, SkipFinalSnapshot=True)
    rds.modify_db_instance(DBInstanceIdentifier=identifier, DeletionProtection=False,
                           ApplyImmediately=True)
    final = replayed.real(declared["finalSnapshotIdentifier"])
    rds.delete_db_instance(DBInstanceIdentifier=identifier, SkipFinalSnapshot=False,
                           FinalDBSnapshotIdentifier=final,
                           DeleteAutomatedBackups=declared["deleteAutomatedBackups"])
    (snapshot,) = rds.describe_db_snapshots(DBSnapshotIdentifier=final)["DBSnapshots"]
    return snapshot["DBSnapshotArn"]


@pytest.fixture(scope="module")
def destroyed(moto_server) -> dict[str, Any]:
    source = kept_source()
    stack = deploy(source, moto_server, prefect_api_url=None)
    key_arn = stack.exports["stackKeyArn"]
    (instance,) = stack.replayed.client("rds").describe_db_instances()["DBInstances"]
    assert instance["KmsKeyId"] == key_arn and instance["DeletionProtection"] is True
    snapshot_arn = destroy_database(stack.replayed, source)
    return {"moto": moto_server, "source": stack, "key_arn": key_arn, "snapshot": snapshot_arn}


def second_stack(stack: str, snapshot: str) -> Evaluation:
    """Another stack in the same account. Pulumi gives auto-named resources a random suffix; the
    mocks count instead, so this one's count starts elsewhere for its names to differ from A's."""
    mocks = RecordingMocks()
    mocks._count = 0x100000 * (1 + sum(map(ord, stack)) % 64)
    return evaluate(server_config("selfhosted-dev", serverDbRestoreSnapshot=snapshot),
                    stack=stack, mocks=mocks)


def restore(destroyed: dict[str, Any], stack: str) -> tuple[Evaluation, Replay]:
    evaluation = second_stack(stack, destroyed["snapshot"])
    return evaluation, Replay(destroyed["moto"].url).run(evaluation)


def test_the_final_snapshot_is_kept_on_the_retained_key(destroyed):
    kms = destroyed["source"].replayed.client("kms")
    rds = destroyed["source"].replayed.client("rds")
    name = destroyed["snapshot"].split(":snapshot:")[1]
    (snapshot,) = rds.describe_db_snapshots(DBSnapshotIdentifier=name)["DBSnapshots"]
    assert snapshot["Encrypted"] is True and snapshot["KmsKeyId"] == destroyed["key_arn"]
    assert kms.describe_key(KeyId=destroyed["key_arn"])["KeyMetadata"]["KeyState"] == "Enabled"


def test_another_stack_restores_it_on_its_own_key_subnet_group_and_security_group(destroyed):
    evaluation, replayed = restore(destroyed, "restore-target")
    exports = real_exports(evaluation, replayed)
    declared = evaluation.one(DB).inputs
    rds = replayed.client("rds")
    (instance,) = rds.describe_db_instances(
        DBInstanceIdentifier=declared["identifier"])["DBInstances"]
    own_key = exports["stackKeyArn"]
    assert own_key != destroyed["key_arn"]
    assert instance["KmsKeyId"] == own_key and instance["StorageEncrypted"] is True
    own_subnets = replayed.real(evaluation.one(SUBNET_GROUP).inputs["name"])
    assert instance["DBSubnetGroup"]["DBSubnetGroupName"] == own_subnets
    assert instance["DBSubnetGroup"]["VpcId"] == exports["vpcId"]
    own_group = replayed.real(evaluation.one(
        "aws:ec2/securityGroup:SecurityGroup", "server-db-sg").id)
    assert [g["VpcSecurityGroupId"] for g in instance["VpcSecurityGroups"]] == [own_group]
    # The copy it started from is the target stack's, on its key; the source is left as it was.
    copy = replayed.created[(COPY, "server-db-restore")]
    assert copy["kms_key_id"] == own_key
    assert declared["snapshotIdentifier"] == copy["identifier"]
    assert {t["Key"]: t["Value"] for t in instance["TagList"]}[RESTORED_FROM_TAG] == \
        destroyed["snapshot"]
    # The password is re-managed: a new secret of the restored instance, on the target's key.
    assert instance["MasterUserSecret"]["KmsKeyId"] == own_key
    assert replayed.real(exports["serverDbSecretArn"]) == instance["MasterUserSecret"]["SecretArn"]


def test_a_restore_from_a_snapshot_whose_key_is_pending_deletion_is_refused(destroyed):
    kms = destroyed["source"].replayed.client("kms")
    key_id = kms.describe_key(KeyId=destroyed["key_arn"])["KeyMetadata"]["KeyId"]
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=30)
    try:
        with pytest.raises(ReplayError, match="KMSKeyNotAccessibleFault") as refused:
            restore(destroyed, "restore-too-late")
        assert refused.value.resource.type == COPY
    finally:
        kms.cancel_key_deletion(KeyId=key_id)
        kms.enable_key(KeyId=key_id)


def test_restoring_the_source_snapshot_directly_would_leave_another_stacks_key(destroyed):
    """The copy is what puts the instance on its own key: declared without it, the replay names
    the replacement every `pulumi up` would plan."""
    evaluation = second_stack("restore-direct", destroyed["snapshot"])
    resources = [r for r in evaluation.resources if r.type != COPY]
    evaluation.one(DB).inputs["snapshotIdentifier"] = destroyed["snapshot"]
    with pytest.raises(ReplayError, match="every pulumi up would replace it"):
        Replay(destroyed["moto"].url).run(resources)
