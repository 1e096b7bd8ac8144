"""The cost model prices the flow-image repository and the flow-code bucket the stack creates, at
the usage the price table states, and nothing for ones it adopts or does not have."""

import json

import pytest

from tools.cost import PriceTable, estimate, items_by_name
from tests.support.harness import ROOT

PRICES = PriceTable.load()
FLOW_CODE_ITEMS = {"ECR flow images stored", "S3 flow code and results stored",
                   "S3 PUT/LIST requests (flow runs)", "S3 GET requests (flow runs)"}


def declared(evaluation):
    return [(r.type, r.inputs) for r in evaluation.resources]


def test_price_table_names_the_ecr_and_s3_sources_and_usage():
    raw = json.loads((ROOT / "pricing" / "us-east-1.json").read_text())
    for family in ("ecr", "s3"):
        assert raw["sources"][family].startswith(f"https://aws.amazon.com/{family}/pricing/")
    for key in ("ecr_storage_gb_month", "s3_standard_gb_month", "s3_put_thousand_requests",
                "s3_get_thousand_requests"):
        assert raw["prices"][key] > 0
    assert raw["assumptions"]["flow_code_note"]


def test_repository_and_bucket_are_priced_at_the_stated_usage(evaluated):
    items = items_by_name(estimate(declared(evaluated("dev")), PRICES))
    assert items["ECR flow images stored"].monthly == pytest.approx(5 * 0.10)
    assert items["S3 flow code and results stored"].monthly == pytest.approx(1 * 0.023)
    assert items["S3 PUT/LIST requests (flow runs)"].monthly == pytest.approx(7300 * 3 / 1000 * 0.005)
    assert items["S3 GET requests (flow runs)"].monthly == pytest.approx(7300 * 5 / 1000 * 0.0004)


@pytest.mark.parametrize("mode", ["none", "adopt"])
def test_a_stack_without_its_own_repository_and_bucket_pays_nothing_for_them(evaluated, mode):
    names = {"flowImageRepositoryName": "team/flows", "flowCodeBucketName": "team-flow-code"}
    evaluation = evaluated("dev", flowImageRepository=mode, flowCodeBucket=mode,
                           **(names if mode == "adopt" else {}))
    assert not FLOW_CODE_ITEMS & set(items_by_name(estimate(declared(evaluation), PRICES)))
