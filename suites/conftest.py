"""The catalog's fixtures, loaded wherever the suites run (a checkout or an installed wheel)."""

pytest_plugins = [
    "winstor.fixtures.clusters",
    "winstor.fixtures.namespaces",
    "winstor.fixtures.storage",
    "winstor.fixtures.workloads",
    "winstor.fixtures.nodes",
    "winstor.fixtures.aws",
    "winstor.fixtures.headstart",
    "winstor.fixtures.ebs_lifecycle",
    "winstor.fixtures.optin",
    "winstor.fixtures.smb_csi",
]
