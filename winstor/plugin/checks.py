"""The check catalog's identity: stable ids, titles and capability markers.

A check is a pytest test marked `@pytest.mark.winstor_check("EBS-PERSIST-01",
title, order=N)`; `order` places checks that tear shared objects down after
those that read them. The id is what reports, bundles and people refer to; it
never changes meaning once published. Markers say what a check needs, so a
cluster that lacks it skips the check with a stated reason (or fails it, when
certifying).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

MARKERS: dict[str, str] = {
    "storageclass": "checks of StorageClasses (default class, gp2-windows, CSI migration)",
    "ebs": "checks that provision or inspect EBS-backed volumes",
    "persistence": "checks that data on a volume survives pod replacement",
    "smb": "checks of SMB shares: Global Mappings, hostPath access, the SMB CSI driver",
    "smb_csi": "checks of the SMB CSI driver (smb.csi.k8s.io): node plugin, dynamic RWX "
               "claims, read-only static volumes",
    "shares": "checks of the AWS service behind each SMB share (FSx for Windows, FSx for "
              "ONTAP SVM, File Gateway)",
    "fsx": "checks of the FSx for Windows file system behind the share",
    "csi_proxy": "checks of csi-proxy on Windows nodes",
    "nodes": "checks of Windows nodes: readiness, build labels, AMIs",
    "aws": "checks that need AWS API access (boto3)",
    "disruptive": "checks that delete or replace workload pods",
    "drain": "checks that cordon and drain a Windows node (opt-in: run only on clusters that "
             "declare it, the embedded cluster's do; --opt-in drain for the others)",
}

# Markers whose checks change more than winstor's own objects, so they run only where a
# cluster declares them (its kubeconfig context's `winstor.io/opt-in` extension, its
# clusters-file entry's `opt_in`, or `--opt-in` for the whole run) and are skipped, with
# how to declare them, everywhere else: marker -> what the check does to the cluster.
OPT_IN: dict[str, str] = {
    "drain": "it cordons a Windows node and evicts the pods on it that a controller manages "
             "(pods of other workloads too), then uncordons it",
}


def opt_in_of(item: pytest.Item) -> frozenset[str]:
    """The opt-in markers a check carries: its cluster must declare each for it to run
    (fixtures/optin.py skips it otherwise, and the head start begins nothing for it)."""
    return frozenset(m for m in OPT_IN if item.get_closest_marker(m))


def check_of(item: pytest.Item) -> tuple[str, str, int] | None:
    mark = item.get_closest_marker("winstor_check")
    if mark is None:
        return None
    return mark.args[0], mark.args[1], mark.kwargs.get("order", 50)


def parse_nodeid(nodeid: str) -> tuple[str, str] | None:
    """(cluster, check id) from `path::test[cluster:CHECK-ID]` (xdist may add `@group`)."""
    if "[" not in nodeid or "]" not in nodeid:
        return None
    param = nodeid[nodeid.rindex("[") + 1:nodeid.rindex("]")]
    cluster, sep, check = param.rpartition(":")
    return (cluster, check) if sep and cluster and check else None


def needed_fixtures(items: list[pytest.Item], cluster_of: Callable[[pytest.Item], str | None]
                    ) -> dict[str, list[tuple[frozenset[str], set[str]]]]:
    """Per cluster, for each selected check that is not skipped before it starts: the opt-in
    markers its cluster must declare for it to run, and the fixtures it uses - what the
    cluster's head start begins (fixtures/headstart.py) and whether the run pulls the
    cluster's image early (`winstor.plugin.prepull`)."""
    out: dict[str, list[tuple[frozenset[str], set[str]]]] = {}
    for item in items:
        name = cluster_of(item)
        if name and check_of(item) and "head_start" in item.fixturenames \
                and not item.get_closest_marker("skip"):
            out.setdefault(name, []).append((opt_in_of(item), set(item.fixturenames)))
    return out
