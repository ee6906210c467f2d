"""Benchmarks behind ``maskwatch bench``: ``system`` (model, decode, naive loop, pipeline, Ultralytics, side by
side in one process) and ``engine`` (one model's pre/infer/post latency). Not part of the runtime."""
