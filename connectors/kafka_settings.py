"""Kafka client settings from the environment, shared by the job, the replay and the dashboard.

Kept apart from ``connectors.kafka`` so the dashboard can use it without importing Bytewax.
"""

from __future__ import annotations

from collections.abc import Mapping

SETTINGS_PREFIX = "KAFKA_"
NOT_CLIENT_SETTINGS = frozenset({"KAFKA_BROKERS"})


def client_settings_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """librdkafka properties from ``KAFKA_*`` variables: ``KAFKA_SASL_USERNAME`` -> ``sasl.username``.

    This is how SASL/TLS for a real cluster reaches every client the job opens,
    without the job knowing each property.
    """
    return {
        name[len(SETTINGS_PREFIX):].lower().replace("_", "."): value
        for name, value in sorted(environ.items())
        if name.startswith(SETTINGS_PREFIX) and name not in NOT_CLIENT_SETTINGS
    }
