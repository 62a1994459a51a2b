"""The detection engine: trades in, records out (``models.engine.DetectionEngine``).

No Kafka, files or network: the imports go one way, and ``tests/test_layers.py`` checks that
nothing here imports ``connectors``, ``flows``, ``dashboard`` or ``benchmarks``.
"""
