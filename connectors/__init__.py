"""The edges: every byte that crosses a process boundary (files, Kafka, JSON, the broker).

Also the tapes the demo, the tests and the benchmarks publish (``synthetic``, ``market``,
``injection``) and the demo launcher (``demo``). Imports ``models`` only, never ``flows``,
``dashboard`` or ``benchmarks`` (``tests/test_layers.py``).
"""
