"""``KAFKA_*`` variables are checked once, alike for the job, the replay and the dashboard: one that
cannot be used is refused at start, naming the variable; every refusal here was tried on librdkafka."""

from __future__ import annotations

import pytest

from connectors.kafka_settings import SET_BY_THE_PROJECT, KafkaSettingsError, checked_client_settings

BROKERS = ("is not taken: the brokers come from KAFKA_BROKERS (the replay's --brokers), which it would override "
           "unseen, and messages would name the wrong address; set KAFKA_BROKERS instead")
LOSS_TIMEOUT = ("is not taken: how long a message may wait for the broker comes from BROKER_LOSS_TIMEOUT_S (the "
                "job's sinks wait until the job stops on it, the replay twice as long); set BROKER_LOSS_TIMEOUT_S "
                "instead")
UNKNOWN = ("(every KAFKA_* variable but KAFKA_BROKERS is given to the Kafka client as a librdkafka property: unset "
           "it in this program's environment)")


@pytest.mark.parametrize("environ, message", [
    # What the project's clients set themselves, and what to set instead (librdkafka's aliases too).
    ({"KAFKA_BOOTSTRAP_SERVERS": "kafka-9:9092"}, f"KAFKA_BOOTSTRAP_SERVERS {BROKERS}"),
    ({"KAFKA_METADATA_BROKER_LIST": "kafka-9:9092"}, f"KAFKA_METADATA_BROKER_LIST {BROKERS}"),
    ({"KAFKA_ENABLE_PARTITION_EOF": "false"}, "KAFKA_ENABLE_PARTITION_EOF is not taken: the job sets it from "
     "STOP_AT_END (and the readers that must find a topic's end set it on); set STOP_AT_END instead"),
    ({"KAFKA_MESSAGE_TIMEOUT_MS": "5000"}, f"KAFKA_MESSAGE_TIMEOUT_MS {LOSS_TIMEOUT}"),
    ({"KAFKA_DELIVERY_TIMEOUT_MS": "5000"}, f"KAFKA_DELIVERY_TIMEOUT_MS {LOSS_TIMEOUT}"),
    ({"KAFKA_AUTO_OFFSET_RESET": "latest"}, "KAFKA_AUTO_OFFSET_RESET is not taken: the job and the dashboard read a "
     "partition from its earliest message when the offset they had is gone (retention, a re-created topic); another "
     "value would skip trades or stop the reads; unset it"),
    # What librdkafka refuses, naming the variable: an unknown property says why it was read at all.
    ({"KAFKA_HOME": "/opt/kafka"}, f'KAFKA_HOME: refused by the Kafka client: No such configuration property: '
                                   f'"home" {UNKNOWN}'),
    ({"KAFKA_": "x"}, f'KAFKA_: refused by the Kafka client: No such configuration property: "" {UNKNOWN}'),
    ({"KAFKA_QUEUE_BUFFERING_MAX_KBYTES": "0"}, 'KAFKA_QUEUE_BUFFERING_MAX_KBYTES: refused by the Kafka client: '
     'Configuration property "queue.buffering.max.kbytes" value 0 is outside allowed range 1..2147483647'),
    ({"KAFKA_ACKS": "1", "KAFKA_ENABLE_IDEMPOTENCE": "true", "KAFKA_CLIENT_ID": "desk-7"},  # `quoted` names
     "KAFKA_ACKS, KAFKA_ENABLE_IDEMPOTENCE: refused by the Kafka client: Failed to create producer: `acks` must be "
     "set to `all` when `enable.idempotence` is true"),
    # Numbers librdkafka reads otherwise than they are written.
    *(({"KAFKA_QUEUE_BUFFERING_MAX_KBYTES": text}, f"KAFKA_QUEUE_BUFFERING_MAX_KBYTES must be a whole number in "
       f"plain digits, got {text!r}, which the Kafka client reads as {read}")
      for text, read in (("1e6", 1), ("64k", 64), ("1048576.5", 1048576), ("010", 8), ("0x400", 1024),
                         ("  2e9 ", 2))),
    *(({"KAFKA_QUEUE_BUFFERING_MAX_KBYTES": text}, f"KAFKA_QUEUE_BUFFERING_MAX_KBYTES={text!r} is beyond the Kafka "
       f"client's whole numbers (32 bits): it reads it as {read}")
      for text, read in (("4294967297", 1), ("4294968320", 1024))),
    ({"KAFKA_LINGER_MS": "5ms"}, "KAFKA_LINGER_MS must be a number in plain digits, got '5ms'"),
])
def test_a_variable_that_cannot_be_used_is_refused_naming_it(environ, message):
    with pytest.raises(KafkaSettingsError) as error:
        checked_client_settings({**environ, "KAFKA_BROKERS": "b:9092", "INPUT_TOPIC": "stocks"})
    assert str(error.value) == message


@pytest.mark.parametrize("environ, settings", [
    ({}, {}),
    ({"KAFKA_BROKERS": "b:9092", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
      "KAFKA_SASL_USERNAME": "ada", "KAFKA_SASL_PASSWORD": "1e3-secret"},  # text, even when it starts with a number
     {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "ada",
      "sasl.password": "1e3-secret"}),
    ({"KAFKA_QUEUE_BUFFERING_MAX_KBYTES": " 2147483647 "}, {"queue.buffering.max.kbytes": " 2147483647 "}),
    ({"KAFKA_FETCH_WAIT_MAX_MS": "+25", "KAFKA_STATISTICS_INTERVAL_MS": "0"},
     {"fetch.wait.max.ms": "+25", "statistics.interval.ms": "0"}),
    ({"KAFKA_LINGER_MS": "0.5"}, {"linger.ms": "0.5"}),  # a fractional property, read as written
    ({"KAFKA_QUEUE_BUFFERING_MAX_MS": "1e3"}, {"queue.buffering.max.ms": "1e3"}),  # strtod reads it as 1000
    ({"KAFKA_FETCH_WAIT_MAX_MS": "25"}, {"fetch.wait.max.ms": "25"}),  # the documented override of the job's 10
    ({"KAFKA_GROUP_ID": "desk", "KAFKA_ENABLE_AUTO_COMMIT": "false"}, {"group.id": "desk",
                                                                       "enable.auto.commit": "false"}),
])
def test_variables_the_client_reads_as_written_are_taken(environ, settings):
    assert checked_client_settings(environ) == settings


def test_the_callers_own_properties_are_part_of_the_check():
    """The replay's producer is idempotent: acks=1 alone passed the check and was a traceback at its first trade."""
    assert checked_client_settings({"KAFKA_ACKS": "1"}) == {"acks": "1"}
    with pytest.raises(KafkaSettingsError, match="^KAFKA_ACKS: refused by the Kafka client: .*`acks` must be set "
                                                 "to `all` when `enable.idempotence` is true"):
        checked_client_settings({"KAFKA_ACKS": "1", "KAFKA_CLIENT_ID": "desk-7"}, {"enable.idempotence": True})


def test_every_property_the_project_sets_itself_says_what_to_set_instead():
    assert all(why.rstrip().endswith(("instead", "unset it")) for why in SET_BY_THE_PROJECT.values())

