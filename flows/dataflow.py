"""The dataflow shared by the streaming job, the backtest and the tests.

Only wiring lives here: sources and sinks come in from ``connectors`` and the
scoring from ``models``, so the same flow runs on Kafka, on files, or on test data.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from connectors.messages import DeadLetter, TradeMessage
from models.config import DetectorConfig
from models.engine import DetectionEngine, InstrumentState
from models.records import AnomalyRecord
from models.trades import Rejection

NANOS_PER_SECOND = 1_000_000_000


def build_flow(
    source: Source, anomaly_sink: Sink, dead_letter_sink: Sink, config: DetectorConfig,
    *, summary_sink: Sink | None = None, flow_id: str = "trade-anomalies",
) -> Dataflow:
    flow = Dataflow(flow_id)
    messages = op.input("read", flow, source)
    # TradeMessage | DeadLetter
    decoded = op.branch("decoded", messages, lambda message: isinstance(message, TradeMessage))
    batches = op.flat_map_batch("group_by_symbol", decoded.trues, group_by_symbol)
    # (symbol, [TradeMessage, ...]) in arrival order
    outcomes = op.stateful_flat_map("detect", batches, InstrumentDetector(config))
    # (symbol, AnomalyRecord | DeadLetter | InstrumentSummary)
    outcomes = op.key_rm("unkey", outcomes)
    anomalies = op.filter("anomalies", outcomes, lambda item: isinstance(item, AnomalyRecord))
    # AnomalyRecord
    rejected = op.filter("rejected", outcomes, lambda item: isinstance(item, DeadLetter))
    dead_letters = op.merge("dead_letters", decoded.falses, rejected)
    # DeadLetter
    op.output("write_anomalies", anomalies, anomaly_sink)
    op.output("write_dead_letters", dead_letters, dead_letter_sink)
    if summary_sink is not None:
        summaries = op.filter_map("summaries", outcomes, _summary_dict)
        # dict: at most one per instrument and batch, when the batch reaches a new second
        op.output("write_summaries", summaries, summary_sink)
    return flow


def group_by_symbol(messages: list[TradeMessage]) -> list[tuple[str, list[TradeMessage]]]:
    """One item per instrument for a whole input batch, in arrival order.

    Scoring a batch of trades costs about as much as scoring one, so the engine
    is handed everything that arrived together.
    """
    groups: dict[str, list[TradeMessage]] = defaultdict(list)
    for message in messages:
        groups[message.symbol].append(message)
    return list(groups.items())


@dataclass
class InstrumentSummary:
    fields: dict[str, Any]


@dataclass
class DetectorState:
    engine_state: InstrumentState
    summary_second: int = -1


class InstrumentDetector:
    """The stateful step: one engine state per instrument, kept by Bytewax."""

    def __init__(self, config: DetectorConfig) -> None:
        self.engine = DetectionEngine(config)

    def __call__(
        self, state: DetectorState | None, messages: list[TradeMessage]
    ) -> tuple[DetectorState, list[AnomalyRecord | DeadLetter | InstrumentSummary]]:
        if state is None:
            state = DetectorState(self.engine.new_state(messages[0].symbol))
        outcomes = self.engine.process(state.engine_state, [message.trade for message in messages])
        out: list[AnomalyRecord | DeadLetter | InstrumentSummary] = []
        for outcome in outcomes:
            if isinstance(outcome, Rejection):
                message = messages[outcome.index]
                out.append(DeadLetter(outcome.reason, "validate", message.origin, message.raw))
            else:
                out.append(outcome)
        second = state.engine_state.last_timestamp_ns // NANOS_PER_SECOND
        if state.engine_state.samples_seen and second > state.summary_second:
            state.summary_second = second
            out.append(InstrumentSummary(self.engine.summary(state.engine_state)))
        return state, out


def _summary_dict(item: Any) -> dict[str, Any] | None:
    return item.fields if isinstance(item, InstrumentSummary) else None
