"""The dataflow and the programs that run it: the streaming job (``main``) and the backtest.

``dataflow.build_flow`` wires ``connectors`` sources and sinks around the ``models`` engine;
``detect_step`` is the flow's per-instrument step (each instrument's state, going dormant, summaries);
``settings`` reads the job's environment, ``supervisor`` decides how it stops.
"""
