"""The fault harness shared by the slow tests and `bench/`: real servers, the declared worker, and
the faults an operator meets (see testbed/burst.py)."""
