"""The server verifies its database: certs/rds-ca-bundle.pem holds Amazon RDS's regional root CAs,
each under a comment naming it, and every server container gets its region's roots as text with
Prefect's TLS settings on (components/server/database.py, components/server/server.py)."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from components.server.database import RDS_CA_BUNDLE, rds_ca_bundle
from components.server.server import DATABASE_CA_FILE, SERVER_CONTAINER, API_CONTAINER
from components.server.migrate import CA_BUNDLE_ENV, CA_FILE_ENV
from tests.support.harness import server_stack_names
from tests.support.server_evaluations import all_containers, environment

LABEL = re.compile(r"^# (?P<name>Amazon RDS .+) \(expires (?P<expires>\d{4}-\d\d-\d\d)\)$")
TLS = "PREFECT_SERVER_DATABASE_SQLALCHEMY_CONNECT_ARGS_TLS"


def labelled() -> list[tuple[str, str, x509.Certificate]]:
    lines = RDS_CA_BUNDLE.read_text().splitlines()
    found = []
    for index, line in enumerate(lines):
        match = LABEL.match(line)
        if match:
            end = lines.index("-----END CERTIFICATE-----", index)
            pem = "\n".join(lines[index + 1:end + 1]).encode()
            found.append((match.group("name"), match.group("expires"),
                          x509.load_pem_x509_certificate(pem)))
    return found


def test_every_certificate_is_an_unexpired_rds_root_under_its_own_name():
    found = labelled()
    assert len(found) == RDS_CA_BUNDLE.read_text().count("BEGIN CERTIFICATE") >= 80
    now = datetime.now(timezone.utc)
    for name, expires, certificate in found:
        (cn,) = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        assert cn.value == name and certificate.issuer == certificate.subject, name
        assert certificate.not_valid_after_utc.date().isoformat() == expires
        assert certificate.not_valid_after_utc > now, name


def test_a_region_gets_its_three_roots_and_an_unknown_region_a_clear_error():
    bundle = x509.load_pem_x509_certificates(rds_ca_bundle("us-east-1").encode())
    names = sorted(str(c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
                   for c in bundle)
    assert names == [f"Amazon RDS us-east-1 Root CA {kind} G1"
                     for kind in ("ECC384", "RSA2048", "RSA4096")]
    assert "eu-west-1" not in rds_ca_bundle("us-east-1")
    with pytest.raises(ValueError, match="aws:region 'xx-nowhere-1'.*refresh_rds_ca"):
        rds_ca_bundle("xx-nowhere-1")


@pytest.mark.parametrize("stack", server_stack_names())
def test_every_server_container_verifies_the_database_against_its_regions_roots(evaluated,
                                                                                 stack):
    found = [c for c in all_containers(evaluated(stack)).values()
             if "PREFECT_SERVER_DATABASE_DRIVER" in environment(c)]
    assert len(found) >= 2
    for container in found:
        env = environment(container)
        assert env[f"{TLS}_ENABLED"] == "true" and env[f"{TLS}_CHECK_HOSTNAME"] == "true"
        assert env[CA_FILE_ENV] == DATABASE_CA_FILE and DATABASE_CA_FILE.startswith("/tmp/")
        assert env[CA_BUNDLE_ENV] == rds_ca_bundle("us-east-1")
        if container["name"] in (SERVER_CONTAINER, API_CONTAINER):
            # The shell writes the file before Prefect starts.
            assert container["command"][2].startswith(
                f'printf "%s\\n" "${CA_BUNDLE_ENV}" > "${CA_FILE_ENV}" && ')
            # CSRF protection is on where the API is served.
            assert env["PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED"] == "true"
