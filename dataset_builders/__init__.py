"""Pseudo-anomaly corpora (``sources``, ``synthesized``, ``synthetic_training``, ``corpus_writer``, ``sampler``)
and the VAD benchmarks (``benchmarks``); see this folder's README.md.

Importing this package imports nothing; each module is imported when asked for.
"""
