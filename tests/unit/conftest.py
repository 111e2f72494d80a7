"""Hypothesis for the unit tests: properties are checked on what is generated, never on how fast.

The default profile fails a test whose examples take over 200 ms or whose generation is slow;
on a machine shared with test beds that measures the load, not the code. Examples and the
database stay as configured, so a failing example is still found and replayed.
"""

from hypothesis import HealthCheck, settings

settings.register_profile("unit", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("unit")
