"""BrokerWatch: an outage is timed from the first unreachable-broker error and ends at any sign of life."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from connectors.broker_watch import BrokerWatch


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def watch(clock) -> BrokerWatch:
    return BrokerWatch("b1:9092", timeout_s=30, clock=clock)


@pytest.mark.parametrize("code", [KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE])
def test_an_unreachable_broker_is_lost_after_the_timeout(watch, clock, code):
    watch.error(KafkaError(code))
    clock.now += 20
    watch.error(KafkaError(code))  # repeats do not restart the clock
    assert watch.lost_for() == 20 and not watch.lost()
    clock.now += 10
    assert watch.lost()
    assert watch.describe() == ("no Kafka broker reachable at b1:9092 for 30 s (BROKER_LOSS_TIMEOUT_S=30); "
                                f"last error: {KafkaError(code).str()}")


def test_a_sign_of_life_ends_the_outage(watch, clock):
    watch.error(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    clock.now += 29
    watch.statistics('{"brokers": {"b1:9092/1": {"state":"UP"}}}')
    clock.now += 29
    assert watch.lost_for() == 0 and not watch.lost()
    watch.error(KafkaError(KafkaError._TRANSPORT))
    clock.now += 29
    watch.alive()
    assert not watch.lost()


def test_statistics_without_a_broker_up_change_nothing(watch, clock):
    watch.error(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    watch.statistics('{"brokers": {"b1:9092/bootstrap": {"state":"TRY_CONNECT"}}}')
    clock.now += 31
    assert watch.lost()


def test_other_errors_are_not_timed(watch, clock):
    watch.error(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    clock.now += 100
    assert not watch.lost() and watch.lost_for() == 0.0 and watch.last_error == ""


def test_an_outage_ended_by_another_thread_between_readings_is_no_error(watch, clock):
    """``alive()`` from a delivery thread may clear the outage while another thread reads it."""
    watch.error(KafkaError(KafkaError._TRANSPORT))
    clock.now += 40

    class ClearedOnRead:
        def __init__(self, outer):
            self.outer = outer

        def __call__(self):
            self.outer.alive()  # the other thread, just after this reading of the clock
            return clock.now

    watch._clock = ClearedOnRead(watch)
    assert watch.lost_for() == 40.0  # the outage as it was read; then it is over
    assert not watch.lost() and watch.lost_for() == 0.0


def test_client_callbacks_turn_librdkafka_logs_off(watch):
    callbacks = watch.client_callbacks()
    assert callbacks["log_level"] == 0 and callbacks["error_cb"] == watch.error
    assert callbacks["stats_cb"] == watch.statistics
