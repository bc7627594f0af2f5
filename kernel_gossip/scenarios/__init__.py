"""Scenarios: a YAML spec of workload, load and expectations, run against a cluster with
locust as the load engine and the kernel's own counters as the ground truth.

Pure cores: spec.py (the spec model), expectations.py (evaluation). I/O: cluster.py (the
provider: lab or kind), truth.py (cgroup and Metrics API sampling), load.py (locust in a
process of its own), report.py, runner.py, cli.py.
"""
