"""Offline evaluation: time split, metrics, baselines, the protocol, promotion gate, tuning, HTML report."""
