"""Test support: backends, worker processes, cross-process counters."""
