"""The dataflow and the programs that run it: the streaming job (``main``) and the backtest.

``dataflow.build_flow`` wires ``connectors`` sources and sinks around the ``models`` engine;
``settings`` reads the job's environment, ``supervisor`` decides how it stops.
"""
