"""Run reports (junit.xml, results.json, report.html) - see issue 4; being written."""
