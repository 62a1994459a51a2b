"""The live dashboard (``streamlit run dashboard/app.py``): reads Kafka, never writes.

Kafka reading (``kafka_tail``, ``feed``), memory (``buffer``, ``error_log``) and the
numbers and figures (``metrics``, ``figures``) are plain modules without
Streamlit, so they are tested directly; ``app`` only lays them out.
"""
