"""The pytest plugin: options, cluster parametrization, ordering, and the run's reports."""
