"""The checkout's root conftest: nothing to add.

The suites' fixtures are loaded by `suites/conftest.py`, so that a wheel (where the
suites are `winstor.suites`) has them too; the plugin arrives through its entry point.
"""
