"""The sandbox's fix to moto's tag lookup gives moto's own answer."""

from __future__ import annotations

from typing import Any

from moto.ec2.models import ec2_backends
from moto.ec2.models.core import TaggedEC2Resource

from include.sandbox import moto_fixes


def test_tag_lookup_matches_moto(sandbox: Any) -> None:
    backend = ec2_backends["123456789012"]["us-east-1"]
    instances = [i for r in list(backend.reservations.values())[:3] for i in r.instances][:5]
    assert instances
    for instance in instances:
        fixed = TaggedEC2Resource.get_tags(instance)
        moto_own = backend.describe_tags(filters={"resource-id": [instance.id]})
        assert sorted(fixed, key=lambda t: t["key"]) == sorted(moto_own, key=lambda t: t["key"])
        assert {t["key"] for t in fixed} >= {"Name", "Environment"}
    assert TaggedEC2Resource.get_tags is moto_fixes._get_tags
