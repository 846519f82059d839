"""The conformance checks: `pytest` in a checkout, `winstor run` from an installed wheel."""
