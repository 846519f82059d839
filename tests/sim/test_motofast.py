"""winstor.sim.motofast answers as moto's own code does, on a seeded backend."""

from __future__ import annotations

from collections.abc import Iterator

import moto.backends
import moto.core.utils
import pytest

from winstor.sim import motofast
from winstor.sim.aws import AwsBackend, ClusterSeed, NodeSeed

SEED = ClusterSeed(
    name="tags", k8s_version="1.31",
    nodes=(NodeSeed("win-a", "windows", "10.0.17763", "us-west-2a", "m5.large", "windows-ng"),
           NodeSeed("lin-a", "linux", None, "us-west-2a", "t3.medium", "linux-ng")),
    ami_release="2024.11.12")


@pytest.fixture(scope="module")
def backend() -> Iterator[AwsBackend]:
    with AwsBackend() as aws:
        aws.seed_cluster(SEED)
        for i in range(4):
            aws.create_volume("us-west-2a", 1, "gp2", {"claim": f"c{i}", "run": "r1"})
        yield aws


def test_the_equivalents_are_installed_by_the_sims_aws(backend: AwsBackend) -> None:
    from moto.ec2.models.core import TaggedEC2Resource

    assert TaggedEC2Resource.get_tags is motofast._get_tags
    assert set(motofast.originals) == {"get_tags", "list_of_moto_modules", "service_name",
                                       "method_names"}


def test_tags_are_what_describe_tags_says(backend: AwsBackend) -> None:
    ec2 = backend._ec2()
    resources = [*ec2.volumes.values(), *ec2.all_instances(), *ec2.amis.values()]
    untagged = ec2.create_volume(size=1, zone_name="us-west-2a")
    resources.append(untagged)
    assert len(resources) > 6
    tagged = 0
    for res in resources:
        ours = res.get_tags()
        assert ours == motofast.originals["get_tags"](res), res.id
        assert ours == ec2.describe_tags(filters={"resource-id": [res.id]})
        tagged += bool(ours)
    assert tagged >= 6 and untagged.get_tags() == []


def test_describe_volumes_by_tag_finds_the_same_volumes(backend: AwsBackend) -> None:
    ec2 = backend._ec2()
    found = ec2.describe_volumes(filters={"tag:claim": ["c2"]})
    assert [dict(v.get_tags()[0]) for v in found] == [
        {"resource_id": found[0].id, "key": "claim", "value": "c2", "resource_type": "volume"}]
    assert len(ec2.describe_volumes(filters={"tag:run": ["r1"]})) == 4


def test_module_list_and_service_names_are_motos_own(backend: AwsBackend) -> None:
    assert set(moto.backends.list_of_moto_modules()) == set(
        motofast.originals["list_of_moto_modules"]())
    for package in ("ec2", "fsx", "storagegateway", "secretsmanager", "resourcegroupstaggingapi"):
        assert moto.core.utils.service_name_from_moto_package_name(package) == \
            motofast.originals["service_name"](package)


def test_response_methods_are_motos_own(backend: AwsBackend) -> None:
    import moto.core.responses
    from moto.ec2.responses import EC2Response
    from moto.fsx.responses import FSxResponse

    for cls in (EC2Response, FSxResponse):
        ours = moto.core.responses.method_names_from_class(cls)
        assert ours == motofast.originals["method_names"](cls)
        assert "describe_volumes" in ours or "describe_file_systems" in ours
