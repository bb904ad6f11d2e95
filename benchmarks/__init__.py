"""The streamcheckpoint benchmark harness: ``python -m benchmarks [--quick] [--only NAME]``.

Every comparison runs its contenders side by side in one process, alternating them round by
round, and reports medians over at least five rounds with each ratio next to its target.
See :mod:`benchmarks.run` for the suites and options.
"""
