"""Experiments and their measurements: evaluation against ground truth and classical flow,
the motion sanity suite, the transfer and look studies, reports and throughput benchmarks."""
