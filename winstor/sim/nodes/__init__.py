"""What runs on the nodes: the Windows and Linux node models and the containers on them.

`windows` models a Windows node (filesystems, volumes, SMB shares and global
mappings, services, csi-proxy) and a container's view of it; `linux` does the
same for the kind flavour's Linux nodes and the stand-in for the Windows node;
`powershell` interprets the commands an exec runs and hands probes to their
Python `twins`; `workloads` keeps one cluster's node models, volumes and running
containers together.

This package depends only on the API machinery (`winstor.sim.api`) and the
cluster plans (`winstor.sim.topology`): the kubelet (a controller) drives it and
the cluster owns it, and neither is imported here.
"""
