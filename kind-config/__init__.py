"""The kind cluster config and its README: package data of winstor (`winstor.kind_config`)."""
