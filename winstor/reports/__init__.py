"""What a run writes and what reads it back.

results.json, report.html, diagnostics, certification bundles, redaction.
"""
