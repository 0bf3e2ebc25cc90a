"""A minted certificate is known the moment the cloud creates it: a mint that fails after
CreateKeysAndCertificate (here: the thing attachment refused) leaves no ACTIVE certificate, and
the station's run has the certificate id before anything else could fail or crash."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from fleetdesk.boards.identity import CloudTarget, mint_identity
from fleetdesk.errors import CloudError

pytestmark = pytest.mark.timeout(120)


class _RefuseAttach:
    """The real sandbox client, except that attaching a certificate to a thing is refused
    (as an AWS account at its principals-per-thing limit would)."""

    def __init__(self, iot) -> None:
        self._iot = iot

    def __getattr__(self, name):
        return getattr(self._iot, name)

    def attach_thing_principal(self, **kwargs):
        raise RuntimeError("LimitExceededException: too many principals attached to the thing")


def test_a_mint_that_fails_after_the_certificate_leaves_nothing_active(sandbox):
    cloud = CloudTarget.from_sandbox(sandbox.state_dir)
    target = dataclasses.replace(cloud, iot=_RefuseAttach(cloud.iot))
    seen: list[str] = []
    thing = f"fd-rec-{uuid.uuid4().hex[:8]}"
    with pytest.raises(CloudError, match="too many principals"):
        mint_identity(target, thing, mac="24:6f:28:00:00:99", on_certificate=seen.append)
    assert len(seen) == 1, "the certificate id was not reported when it was created"
    desc = cloud.iot.describe_certificate(certificateId=seen[0])["certificateDescription"]
    assert desc["status"] == "INACTIVE"  # never left ACTIVE, although no thing points at it
    assert cloud.iot.list_thing_principals(thingName=thing)["principals"] == []
