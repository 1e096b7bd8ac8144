"""The server's data survives `pulumi destroy` and can be brought back: a final snapshot and
deletion protection unless a stack file says otherwise, automated backups kept with the snapshot,
the stack key retained whenever the database leaves something encrypted with it, and a restore
that copies the named snapshot under the stack's key and refuses to replace a database that
exists unless told to."""

from __future__ import annotations

from functools import cache

import pulumi
import pytest

from components.config.server import RESTORED_FROM_TAG, db_identifier
from components.config.reader import ConfigError
from tests.support.harness import (
    PROJECT, ROOT, Evaluation, RecordingMocks, evaluate, load_stack_config, server_stack_names,
    stack_file_values, stack_names, with_credentials,
)

DB = "aws:rds/instance:Instance"
COPY = "aws:rds/snapshotCopy:SnapshotCopy"
KEY = "aws:kms/key:Key"
ALIAS = "aws:kms/alias:Alias"
SNAPSHOT = "arn:aws:rds:us-east-1:123456789012:snapshot:prefect-ecs-worker-old-db-final-1a2b3c4d"


def server(**overrides: str) -> dict[str, str]:
    """The dev stack with a server turned on and nothing else said about its database: what a team
    gets from Pulumi.yaml's defaults when it sets `prefectServer` in an existing stack file."""
    config = load_stack_config("dev")
    config[f"{PROJECT}:prefectServer"] = "single"
    return with_credentials(config, **overrides)


@cache
def server_evaluation(**overrides: str) -> Evaluation:
    """`server(**overrides)` evaluated once for the tests of this file that only read it."""
    return evaluate(server(**overrides), stack="dev")


def test_a_server_turned_on_without_a_word_keeps_a_snapshot_and_is_protected():
    db = server_evaluation().one(DB).inputs
    assert db["deletionProtection"] is True
    assert db["skipFinalSnapshot"] is False and db["finalSnapshotIdentifier"]
    assert db["deleteAutomatedBackups"] is False


def test_without_a_final_snapshot_nothing_is_kept_and_the_backups_go_too():
    db = server_evaluation(serverDbFinalSnapshot="false").one(DB).inputs
    assert db["skipFinalSnapshot"] is True and "finalSnapshotIdentifier" not in db
    assert db["deleteAutomatedBackups"] is True


def test_a_stack_file_that_turns_either_off_says_why_and_what_it_costs():
    turned_off = [stack for stack in server_stack_names()
                  if False in (stack_file_values(stack).get("serverDbDeletionProtection"),
                               stack_file_values(stack).get("serverDbFinalSnapshot"))]
    assert turned_off == ["selfhosted-dev"]
    for stack in turned_off:
        lines = (ROOT / f"Pulumi.{stack}.yaml").read_text().splitlines()
        first = min(i for i, line in enumerate(lines)
                    if "serverDbDeletionProtection" in line or "serverDbFinalSnapshot" in line)
        comment = []
        for line in reversed(lines[:first]):
            if not line.strip().startswith("#"):
                break
            comment.append(line)
        text = " ".join(comment)
        assert "costs" in text and "restored" in text, (stack, text)


def _key_retained(evaluation: Evaluation) -> bool:
    (key,) = evaluation.of_type(KEY)
    assert key.name == "stack-key-key"
    return key.retain_on_delete


@pytest.mark.parametrize("stack", stack_names())
def test_the_stack_key_outlives_destroy_exactly_when_the_database_leaves_a_snapshot(
        stack, evaluated):
    values = stack_file_values(stack)
    keeps = (values.get("prefectServer", "none") != "none"
             and values.get("serverDbFinalSnapshot", True) is not False)
    assert _key_retained(evaluated(stack)) is keeps
    if stack == "selfhosted-prod":
        assert keeps


def test_the_key_is_retained_for_a_defaulted_server_and_not_without_its_snapshot():
    assert _key_retained(server_evaluation()) is True
    assert _key_retained(server_evaluation(serverDbFinalSnapshot="false")) is False


def test_the_key_alias_is_never_retained_so_a_next_life_of_the_stack_can_name_its_key():
    evaluation = server_evaluation()
    assert _key_retained(evaluation), "the key itself is, in the same evaluation"
    aliases = evaluation.of_type(ALIAS)
    assert aliases and not any(alias.retain_on_delete for alias in aliases)


def test_the_final_snapshot_is_named_by_the_stack_key_and_the_restored_snapshot():
    plain = server_evaluation()
    key_id = plain.one(KEY).id
    name = plain.one(DB).inputs["finalSnapshotIdentifier"]
    assert name == f"{db_identifier(f'{PROJECT}-dev')}-final-{key_id[:8]}"
    restored = server_evaluation(serverDbRestoreSnapshot=SNAPSHOT).one(DB).inputs
    assert restored["finalSnapshotIdentifier"].startswith(f"{name}-")
    assert restored["finalSnapshotIdentifier"] != name


def test_a_restore_copies_the_snapshot_under_the_stack_key_and_starts_from_the_copy():
    evaluation = server_evaluation(serverDbRestoreSnapshot=SNAPSHOT)
    copy = evaluation.one(COPY).inputs
    db = evaluation.one(DB).inputs
    key_arn = evaluation.one(KEY).outputs["arn"]
    assert copy["sourceDbSnapshotIdentifier"] == SNAPSHOT
    assert copy["kmsKeyId"] == key_arn == db["kmsKeyId"] == evaluation.exports["stackKeyArn"]
    assert db["snapshotIdentifier"] == copy["targetDbSnapshotIdentifier"]
    assert db["snapshotIdentifier"].startswith(db["identifier"] + "-restore-")
    assert db["tags"][RESTORED_FROM_TAG] == SNAPSHOT
    # The rest of the instance is the stack's own, as for a new database.
    plain = server_evaluation().one(DB).inputs
    for key in ("dbSubnetGroupName", "parameterGroupName", "instanceClass", "multiAz",
                "manageMasterUserPassword", "deletionProtection"):
        assert db[key] == plain[key], key


def test_without_a_restore_no_copy_is_declared_and_rds_is_never_asked():
    evaluation = server_evaluation()
    assert not evaluation.of_type(COPY)
    assert "snapshotIdentifier" not in evaluation.one(DB).inputs
    assert "aws:rds/getInstances:getInstances" not in evaluation.calls


class ExistingDatabase(RecordingMocks):
    """RDS answers that the stack's database exists; `restored_from` is the snapshot its tag names
    (None: it was created empty)."""

    def __init__(self, restored_from: str | None = None):
        super().__init__()
        self.restored_from = restored_from

    def call(self, args: pulumi.runtime.MockCallArgs):
        if args.token == "aws:rds/getInstances:getInstances":
            (by_id,) = args.args["filters"]
            assert by_id["name"] == "db-instance-id"
            tags = args.args.get("tags") or {}
            match = not tags or tags == {RESTORED_FROM_TAG: self.restored_from}
            found = by_id["values"] if match else []
            return {"id": "us-east-1", "instanceIdentifiers": found,
                    "instanceArns": [f"arn:aws:rds:us-east-1:123456789012:db:{i}" for i in found]}
        return super().call(args)


@pytest.fixture
def warnings(monkeypatch) -> list[str]:
    seen: list[str] = []
    monkeypatch.setattr(pulumi, "warn", lambda message, *a, **k: seen.append(message))
    return seen


def test_restoring_over_an_existing_database_is_refused_before_any_resource(warnings):
    mocks = ExistingDatabase()
    with pytest.raises(ConfigError) as refused:
        evaluate(server(serverDbRestoreSnapshot=SNAPSHOT), stack="dev", mocks=mocks)
    message = str(refused.value)
    identifier = db_identifier(f"{PROJECT}-dev")
    assert f"the database {identifier} exists and was not started from {SNAPSHOT}" in message
    assert "restoring replaces it" in message and "taking its final snapshot" in message
    assert "set serverDbRestoreReplaces to the same value" in message
    assert mocks.resources == [] and warnings == []


def test_without_a_final_snapshot_the_refusal_says_the_data_would_be_lost():
    with pytest.raises(ConfigError, match="WITHOUT a final snapshot"):
        evaluate(with_credentials(load_stack_config("selfhosted-dev"),
                                  serverDbRestoreSnapshot=SNAPSHOT),
                 stack="selfhosted-dev", mocks=ExistingDatabase())


def test_an_acknowledged_replacement_goes_ahead_with_a_warning_naming_it(warnings):
    evaluation = evaluate(server(serverDbRestoreSnapshot=SNAPSHOT,
                                 serverDbRestoreReplaces=SNAPSHOT),
                          stack="dev", mocks=ExistingDatabase())
    assert evaluation.one(DB).inputs["snapshotIdentifier"]
    (warning,) = warnings
    assert "serverDbRestoreReplaces acknowledged" in warning and "restoring replaces it" in warning


def test_a_database_already_started_from_the_snapshot_is_left_alone(warnings):
    evaluation = evaluate(server(serverDbRestoreSnapshot=SNAPSHOT), stack="dev",
                          mocks=ExistingDatabase(restored_from=SNAPSHOT))
    assert evaluation.one(DB).inputs["tags"][RESTORED_FROM_TAG] == SNAPSHOT
    assert warnings == []


def test_a_database_started_from_another_snapshot_is_refused_too():
    with pytest.raises(ConfigError, match="was not started from"):
        evaluate(server(serverDbRestoreSnapshot=SNAPSHOT), stack="dev",
                 mocks=ExistingDatabase(restored_from="prefect-ecs-worker-older-db-final"))
