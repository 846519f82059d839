"""Where clusters come from.

Profiles, and the launchers of the embedded cluster, kind and the control plane.
"""
