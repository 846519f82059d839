"""The Go modules of the control-plane target: package data of winstor.

Installed as `winstor.controlplane` (pyproject's package-dir maps this folder), so an
installed wheel can build the same binaries (`winstor.targets.controlplane.build`).
"""
