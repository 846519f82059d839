"""Talking to one cluster.

API access, waits, exec, probes, the seed's objects, and the view of a cluster checks get.
"""
