"""Kafka client settings from the environment, shared by the job, the replay and the dashboard.

Every ``KAFKA_*`` variable but ``KAFKA_BROKERS`` is a librdkafka property
(``KAFKA_SASL_USERNAME`` -> ``sasl.username``). ``checked_client_settings`` is how
each of the three reads them: a variable that would fail later, or quietly do
something else than it says, stops the program at start with a message naming it.

Kept apart from ``connectors.kafka`` so the dashboard can use it without importing Bytewax.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

SETTINGS_PREFIX = "KAFKA_"
NOT_CLIENT_SETTINGS = frozenset({"KAFKA_BROKERS"})

_BROKERS = ("the brokers come from KAFKA_BROKERS (the replay's --brokers), which it would override unseen, "
            "and messages would name the wrong address; set KAFKA_BROKERS instead")
_LOSS_TIMEOUT = ("how long a message may wait for the broker comes from BROKER_LOSS_TIMEOUT_S (the job's sinks "
                 "wait until the job stops on it, the replay twice as long); set BROKER_LOSS_TIMEOUT_S instead")
SET_BY_THE_PROJECT = {
    "bootstrap.servers": _BROKERS,
    "metadata.broker.list": _BROKERS,  # librdkafka's other name for bootstrap.servers
    "enable.partition.eof": "the job sets it from STOP_AT_END (and the readers that must find a topic's end set "
                            "it on); set STOP_AT_END instead",
    "message.timeout.ms": _LOSS_TIMEOUT,
    "delivery.timeout.ms": _LOSS_TIMEOUT,  # librdkafka's other name for message.timeout.ms
    "auto.offset.reset": "the job and the dashboard read a partition from its earliest message when the offset "
                         "they had is gone (retention, a re-created topic); another value would skip trades or "
                         "stop the reads; unset it",
}
"""Properties the project's clients set themselves, for a reason a ``KAFKA_*`` variable would
silently defeat: why, and what to set instead."""

PLAIN_WHOLE_NUMBER = re.compile(r"\s*[+-]?(?:0|[1-9][0-9]*)\s*")
PLAIN_NUMBER = re.compile(r"\s*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*")
NUMBER_START = re.compile(r"\s*[-+.0-9]")
NUMBER_REFUSAL = re.compile(r'Invalid value for configuration property "[a-z.]+"')
C_WHOLE_NUMBER = re.compile(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
INT32 = 2**31
RECORD_FRAMING_BYTES = 36
"""What a producer adds to a message's key and value before it holds them against
``message.max.bytes``: the widest framing of a Kafka record (its length, attributes, timestamp and
offset, key and value lengths and header count, the numbers as variable-length integers at their
widest). A message of more than ``message.max.bytes - 36`` bytes of key and value is refused at
once (measured with librdkafka 2.16 at 1,000 and 300,000, with and without a key)."""


class KafkaSettingsError(ValueError):
    """A ``KAFKA_*`` variable cannot be used as a Kafka client property; the message names it."""


def client_settings_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """librdkafka properties from ``KAFKA_*`` variables: ``KAFKA_SASL_USERNAME`` -> ``sasl.username``.

    This is how SASL/TLS for a real cluster reaches every client the job opens,
    without the job knowing each property. Unchecked: ``checked_client_settings`` checks.
    """
    return {
        name[len(SETTINGS_PREFIX):].lower().replace("_", "."): value
        for name, value in sorted(environ.items())
        if name.startswith(SETTINGS_PREFIX) and name not in NOT_CLIENT_SETTINGS
    }


def checked_client_settings(environ: Mapping[str, str], base: Mapping[str, object] | None = None) -> dict[str, str]:
    """``client_settings_from_env``, or ``KafkaSettingsError`` naming the variable that cannot be used.

    Refused: a property the project sets itself (``SET_BY_THE_PROJECT``, saying what to set
    instead); one librdkafka refuses, tried together on a consumer and a producer built on
    ``base`` (the caller's own properties, for the combinations they refuse); and a number
    librdkafka would read otherwise than it is written. librdkafka reads numbers as C does, up
    to the first stray character: ``1e6`` is 1, ``010`` is 8, ``4294967297`` wraps to 1. So
    whole-number properties take plain whole digits within 32 bits, fractional ones plain decimals.
    Checked at start because the client fails only once it is opened, and some values never
    fail at all (``KAFKA_QUEUE_BUFFERING_MAX_KBYTES=1e6``, read as 1 KB, hung the job's sinks).
    """
    properties = _properties_by_variable(environ)
    for variable, (name, _text) in properties.items():
        if name in SET_BY_THE_PROJECT:
            raise KafkaSettingsError(f"{variable} is not taken: {SET_BY_THE_PROJECT[name]}")
    settings = client_settings_from_env(environ)
    refusal = client_settings_refusal(settings, base)
    if refusal is not None:
        raise KafkaSettingsError(f"{_blamed(properties, refusal)}: refused by the Kafka client: {refusal}"
                                 f"{_unknown_hint(refusal)}")
    for variable, (name, text) in properties.items():
        _check_number(variable, name, text)
    return settings


def client_settings_refusal(settings: Mapping[str, str], base: Mapping[str, object] | None = None) -> str | None:
    """Why librdkafka refuses ``settings`` (over ``base``) on a consumer or a producer (as the admin
    client is), or None. No broker is contacted: none is given."""
    from confluent_kafka import Consumer, KafkaException, Producer

    given = {"group.id": "settings-check", "log_level": 0, "error_cb": lambda _error: None,
             **(base or {}), **settings}
    try:
        Consumer(given).close()
        Producer(given)
    except KafkaException as error:
        return error.args[0].str().strip()
    return None


def _properties_by_variable(environ: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Each ``KAFKA_*`` variable's (property, value): a refusal names the property, a message the variable."""
    return {variable: property_ for variable, value in sorted(environ.items())
            for property_ in client_settings_from_env({variable: value}).items()}


def _blamed(properties: Mapping[str, tuple[str, str]], refusal: str) -> str:
    """The variables whose property the refusal names (librdkafka quotes names "so" or `so`);
    all of them when it names none (a combination)."""
    named = [variable for variable, (name, _value) in properties.items()
             if f'"{name}"' in refusal or f"`{name}`" in refusal]
    return ", ".join(named or properties)


def _unknown_hint(refusal: str) -> str:
    """``KAFKA_HOME=/opt/kafka``, set by Kafka images, is no librdkafka property: say why it is read at all."""
    if not refusal.startswith("No such configuration property"):
        return ""
    return (" (every KAFKA_* variable but KAFKA_BROKERS is given to the Kafka client as a librdkafka "
            "property: unset it in this program's environment)")


def _check_number(variable: str, name: str, text: str) -> None:
    """Refuse a number librdkafka would read otherwise than it is written (see ``checked_client_settings``)."""
    if not NUMBER_START.match(text) or not _takes_numbers(name):
        return
    if _takes_fractions(name):
        if not PLAIN_NUMBER.fullmatch(text):
            raise KafkaSettingsError(f"{variable} must be a number in plain digits, got {text!r}")
        return
    read = _read_by_the_client(text)
    if not PLAIN_WHOLE_NUMBER.fullmatch(text):
        raise KafkaSettingsError(f"{variable} must be a whole number in plain digits, got {text!r}"
                                 + (f", which the Kafka client reads as {read}" if read is not None else ""))
    if not -INT32 <= int(text) < INT32:
        raise KafkaSettingsError(f"{variable}={text!r} is beyond the Kafka client's whole numbers (32 bits): "
                                 f"it reads it as {read}")


def _takes_numbers(name: str) -> bool:
    """Whether librdkafka reads the property as a number: it refuses text with this message."""
    return NUMBER_REFUSAL.fullmatch(client_settings_refusal({name: "not a number"}) or "") is not None


def _takes_fractions(name: str) -> bool:
    """Whether librdkafka reads the property as a fraction (``linger.ms``): a whole-number property
    reads -0.5 as 0, a fractional one refuses it as -0.5 (no property takes negative fractions)."""
    return "value -0.5 " in (client_settings_refusal({name: "-0.5"}) or "")


def _read_by_the_client(text: str) -> int | None:
    """What librdkafka makes of ``text`` for a whole-number property: C's ``strtol`` in base 0
    (``0x`` hex, a leading 0 octal) up to the first stray character, clamped to 64 bits, then
    cast to a 32-bit int."""
    match = C_WHOLE_NUMBER.match(text)
    if match is None:
        return None
    sign, digits = match.groups()
    base = 16 if digits[:2] in ("0x", "0X") else 8 if len(digits) > 1 and digits[0] == "0" else 10
    value = max(-(2**63), min(2**63 - 1, int(sign + digits, base)))
    return (value + INT32) % (2 * INT32) - INT32
