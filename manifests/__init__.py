"""The seed's manifests, the PowerShell probes and the RBAC manifests: package data of winstor.

Installed as `winstor.manifests` (see pyproject's package-dir); read through
`winstor.resources.data_dir("manifests")`.
"""
