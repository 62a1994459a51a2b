"""The dataflow shared by the streaming job, the backtest and the tests.

Only wiring lives here: sources and sinks come in from ``connectors``, the scoring from ``models``
and the per-instrument step from ``flows.detect_step``, so the same flow runs on Kafka, on files,
or on test data.
"""

from __future__ import annotations

import threading
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from connectors.messages import DeadLetter, TradeMessage
from flows.detect_step import NANOS_PER_SECOND, InstrumentDetector, InstrumentSummary, group_by_symbol
from flows.instruments import DEFAULT_MAX_INSTRUMENTS, EventClock, InstrumentRoster
from models.config import DetectorConfig
from models.engine import DetectionEngine
from models.incidents import IncidentSettings, IncidentUpdate
from models.records import AnomalyRecord


def build_flow(
    source: Source, anomaly_sink: Sink, dead_letter_sink: Sink, config: DetectorConfig,
    *, summary_sink: Sink | None = None, incident_sink: Sink | None = None,
    incidents: IncidentSettings | None = None, flow_id: str = "trade-anomalies",
    max_instruments: int = DEFAULT_MAX_INSTRUMENTS, stopping: threading.Event | None = None,
) -> Dataflow:
    """The one dataflow of the job, the backtest and the tests: the sources and sinks decide where
    trades come from and records go, so the same steps run on Kafka, on files or on test data.

    ``stopping``: set when the job is stopping (a signal, a lost broker), so that the end of its
    input is a pause, not the end of the trades (``flows.detect_step.InstrumentDetector.on_eof``)."""
    flow = Dataflow(flow_id)
    messages = op.input("read", flow, source)
    # TradeMessage | DeadLetter
    decoded = op.branch("decoded", messages, lambda message: isinstance(message, TradeMessage))
    # trues: TradeMessage; falses: DeadLetter (refused at decode)
    batches = op.flat_map_batch("group_by_symbol", decoded.trues, group_by_symbol)
    # (symbol, InstrumentBatch): its messages in arrival order and their validation
    engine, clock = DetectionEngine(config, incidents), EventClock(round(config.idle_s * NANOS_PER_SECOND))
    roster, summarise = InstrumentRoster(max_instruments), summary_sink is not None
    outcomes = op.stateful_batch("detect", batches, lambda snapshot: InstrumentDetector(
        engine, clock, snapshot, summaries=summarise, roster=roster, stopping=stopping))
    # (symbol, AnomalyRecord | DeadLetter | InstrumentSummary | IncidentUpdate)
    outcomes = op.key_rm("unkey", outcomes)
    # AnomalyRecord | DeadLetter | InstrumentSummary | IncidentUpdate
    anomalies = op.filter("anomalies", outcomes, lambda item: isinstance(item, AnomalyRecord))
    # AnomalyRecord
    rejected = op.filter("rejected", outcomes, lambda item: isinstance(item, DeadLetter))
    # DeadLetter: refused in the detect step (stages validate, duplicate, capacity, engine)
    dead_letters = op.merge("dead_letters", decoded.falses, rejected)
    # DeadLetter
    op.output("write_anomalies", anomalies, anomaly_sink)
    op.output("write_dead_letters", dead_letters, dead_letter_sink)
    if summary_sink is not None:
        summaries = op.filter_map("summaries", outcomes, _summary_dict)
        # dict: when an instrument's batch ends in a new second, when its state ends (a day idle), at the end
        op.output("write_summaries", summaries, summary_sink)
    if incident_sink is not None:
        updates = op.filter("incidents", outcomes, lambda item: isinstance(item, IncidentUpdate))
        # IncidentUpdate: every state change of an incident (open, updated, closed)
        op.output("write_incidents", updates, incident_sink)
    return flow


def _summary_dict(item: Any) -> dict[str, Any] | None:
    return item.fields if isinstance(item, InstrumentSummary) else None

