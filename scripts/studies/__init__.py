"""The studies behind ``results/``: each study's own rules, thresholds and write-up, fixed in its PLAN.md before its
data. The general machinery they use lives in the ``nasprune`` package; the entry points are ``scripts/*.py``."""
