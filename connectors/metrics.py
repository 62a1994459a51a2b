"""The job's own Prometheus counters, counted where items cross the process edge.

They live in prometheus-client's global registry, which is the one Bytewax's
dataflow API serves on ``:3030/metrics`` when ``BYTEWAX_DATAFLOW_API_ENABLED=true``,
so one scrape gives Bytewax's step metrics and these side by side.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

TRADES_READ = Counter(
    "trade_detector_trades_read",
    "Messages read from the input topic that decoded to a trade.",
)
ANOMALIES_WRITTEN = Counter(
    "trade_detector_anomalies_written",
    "Anomaly records written to the output topic, by severity level.",
    ["level"],
)
DEAD_LETTERS_WRITTEN = Counter(
    "trade_detector_dead_letters_written",
    "Dead letters written to the dead-letter topic, by stage (decode, validate, duplicate, capacity, engine, kafka).",
    ["stage"],
)
SUMMARIES_WRITTEN = Counter(
    "trade_detector_summaries_written",
    "Instrument summaries written to the summary topic.",
)
INCIDENTS_WRITTEN = Counter(
    "trade_detector_incidents_written",
    "Incident updates written to the incident topic.",
)
FETCH_WAIT_MS = Gauge(
    "trade_detector_fetch_wait_ms",
    "The input partition's fetch.wait.max.ms now: above the configured value while the stall guard has it widened.",
    ["topic", "partition"],
)
STALLS = Counter(
    "trade_detector_input_stalls",
    "Times an input partition returned nothing for a second while the broker said messages were waiting.",
    ["topic", "partition"],
)
