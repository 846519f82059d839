"""Loads winstor's fixtures; the plugin itself arrives through its entry point."""

pytest_plugins = [
    "fixtures.clusters",
    "fixtures.namespaces",
    "fixtures.storage",
    "fixtures.workloads",
    "fixtures.nodes",
    "fixtures.aws",
    "fixtures.headstart",
]
