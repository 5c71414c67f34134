"""The service layer: every rule of the key server, free of HTTP.

Functions take a ``Session`` and plain values, raise ``core.errors`` domain
errors, and commit their own unit of work. Routes, the CLI, the worker and
the benchmarks all go through here.
"""
