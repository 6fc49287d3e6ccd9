"""Scan every version of every file in a repository's history for secrets (detect-secrets).

``git rev-list --objects --all`` lists each blob once, with a path it had; each is
written to a scratch folder under that path (made unique) and scanned with
detect-secrets' default plugins. A finding is (path, line, type, hashed secret);
``ALLOWED`` lists the audited false positives by hashed secret, each with a reason.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# hashed secret (sha1, as detect-secrets reports it) -> what it is: names of Secrets and of keys in them
ALLOWED: dict[str, str] = {
    "d88022f529463ff370fc09650e7b0d34f6ef655f": "mpg-client-tls, the Ingress's TLS Secret name",
    "a5fbf8e603f9f2cd7c4ce9722af6e002065a740a": "mpg-s3-credentials, the S3 Secret name",
    "2dd221b5a3772ac852e9e224b64deaf1a066d171": "mpg-git-token, the git token Secret name",
    "de5068b78c0cbdd88c750ee40feeaae1b465a517": "AWS_ACCESS_KEY_ID, a key name in the S3 Secret",
    "8956265d216d474a080edaa97880d37fc1386f33": "AWS_SECRET_ACCESS_KEY, a key name in the S3 Secret",
    "ee977806d7286510da8b9a7492ba58e2484c0ecc": "token, the key name in the git token Secret",
    "112bb791304791ddcf692e29fd5cf149b35fea37": "USER:PASSWORD, the placeholder of a documented URL form",
    "1f2058d8ac7f44272023d8df71877038044813d3": "ro-secret, a made-up value in the CI variables test",
    "1a91d62f7ca67399625a4368a6ab5d4a3baa6073": "pw, the made-up password an early cluster check put in a URL",
}
#: The scanner's own fixtures, allowed only where they live: the hashes above (in this file) and
#: the made-up key the positive control commits to a scratch repository (in test_secrets.py).
HERE = "tests/security/history.py"
POSITIVE_CONTROL = ("tests/security/test_secrets.py", "ba1474d6f7ae6ca6965085b1c50fd2df66d35f33")


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    kind: str
    hashed: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind} ({self.hashed[:12]})"


#: Content-addressed files whose hex strings are the hashes they are named by or list: DVC objects (a
#: directory's manifest lists md5s; a model card, its sha256 id and data md5) and the shipped model cards.
CONTENT_ADDRESSED = re.compile(r"data/dvc-remote/files/md5/[0-9a-f]{2}/[0-9a-f]{30}(\.dir)?|data/models/.+/model\.json")


def allowed(finding: Finding) -> bool:
    """An audited false positive, the content hash a DVC file records (every data version has one),
    a content-addressed file's hashes, or one of the scanner's own fixtures where it lives."""
    return (
        finding.hashed in ALLOWED
        or (finding.path.endswith(".dvc") and finding.kind == "Hex High Entropy String")
        or (CONTENT_ADDRESSED.fullmatch(finding.path) and finding.kind == "Hex High Entropy String")
        or (finding.path == HERE and finding.kind == "Hex High Entropy String")
        or (finding.path, finding.hashed) == POSITIVE_CONTROL
    )


def blobs(repo: Path) -> dict[str, str]:
    """blob id -> one path it had, for every blob reachable from any ref."""
    listing = subprocess.run(
        ["git", "rev-list", "--objects", "--all"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout
    objects = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in listing.splitlines() if " " in line}
    kinds = subprocess.run(
        ["git", "cat-file", "--batch-check=%(objectname) %(objecttype)"],
        cwd=repo, input="\n".join(objects), capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return {oid: objects[oid] for oid, kind in (line.split() for line in kinds.splitlines()) if kind == "blob"}


def scan_history(repo: Path) -> list[Finding]:
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    found = []
    with tempfile.TemporaryDirectory(prefix="secret-scan-") as scratch:
        files = {}
        for oid, path in blobs(repo).items():
            target = Path(scratch) / oid[:12] / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(subprocess.run(["git", "cat-file", "blob", oid], cwd=repo, capture_output=True).stdout)
            files[str(target)] = path
        secrets = SecretsCollection()
        with default_settings():
            for name in files:
                secrets.scan_file(name)
        for name, secret in secrets:
            found.append(Finding(files[name], secret.line_number, secret.type, secret.secret_hash))
    return sorted(found, key=str)
