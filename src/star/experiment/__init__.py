"""Simulated runs: the loop, its run directory, sweeps, trackers and reports."""
