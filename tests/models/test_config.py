"""Engine settings from DETECTOR_* variables: the new ones parse, bad values name the variable."""

from __future__ import annotations

import pytest

from models.config import ConfigError, DetectorConfig
from models.features import HISTORY_INPUTS


def test_new_settings_parse():
    config = DetectorConfig.from_env({
        "DETECTOR_COMPILED": "false", "DETECTOR_FIT_HELPERS": "2",
        "DETECTOR_MODEL_FEATURES": "size_share, deviation_bps,instant_move_bps,distinct_stamps_50ms,size_vs_median,size_vs_max,"
                                   "size_vs_tail,instant_move_vs_tail,breakout_bps,breakout_vs_swing,trades_since_large",
    })
    assert config.compiled is False and config.fit_helpers == 2
    assert config.model_features[1:] == HISTORY_INPUTS


@pytest.mark.parametrize("variable, value, message", [
    ("DETECTOR_FIT_HELPERS", "0", "DETECTOR_FIT_HELPERS: must be between 1 and 64"),
    ("DETECTOR_FOREST_MAX_SAMPLES", "20000", "DETECTOR_FOREST_MAX_SAMPLES: must be between 2 and 16384"),
    ("DETECTOR_COMPILED", "maybe", "DETECTOR_COMPILED='maybe' is not a valid bool"),
    ("DETECTOR_MODEL_FEATURES", "size_share,median_of_nothing", "DETECTOR_MODEL_FEATURES: unknown feature(s) ['median_of_nothing']"),
    ("DETECTOR_BURST_ALONE_STAMPS", "-1", "DETECTOR_BURST_ALONE_STAMPS: must be 0 (off) or positive"),
    ("DETECTOR_OFF_MARKET_ALONE_BPS", "-40", "DETECTOR_OFF_MARKET_ALONE_BPS: must be 0 (off) or positive"),
    ("DETECTOR_OFF_MARKET_ALONE_VS_TAIL", "-1", "DETECTOR_OFF_MARKET_ALONE_VS_TAIL: must be 0 (off) or positive"),
    ("DETECTOR_OPENING_RUSH_S", "7200", "DETECTOR_OPENING_RUSH_S: must be between 0 (off) and 3600"),
    ("DETECTOR_ZSCORE_BREAKOUT_LIMIT", "0", "DETECTOR_ZSCORE_BREAKOUT_LIMIT: must be positive"),
    ("DETECTOR_ZSCORE_BREAKOUT_SWING_LIMIT", "-8", "DETECTOR_ZSCORE_BREAKOUT_SWING_LIMIT: must be positive"),
    ("DETECTOR_ZSCORE_SIZE_TAIL_AFTER_LARGE", "0.8", "DETECTOR_ZSCORE_SIZE_TAIL_AFTER_LARGE: must be at least 1 (off)"),
    ("DETECTOR_OPENING_RUSH_S", "a minute", "DETECTOR_OPENING_RUSH_S='a minute' is not a valid float"),
    ("DETECTOR_IDLE_S", "1e300", "DETECTOR_IDLE_S: must be positive and at most 3153600000 seconds (100 years)"),
    ("DETECTOR_MAX_CLOCK_JUMP_S", "1e12", "DETECTOR_MAX_CLOCK_JUMP_S: must be positive and at most 3153600000"),
    ("DETECTOR_MAX_LATENESS_S", "1e300", "DETECTOR_MAX_LATENESS_S: must be between 0 and 3153600000 seconds"),
    ("DETECTOR_IDLE_S", "700000",  # a limit the user did not set names both variables
     "DETECTOR_MAX_CLOCK_JUMP_S: (604800) must be at least DETECTOR_IDLE_S (700000)"),
])
def test_bad_values_name_the_variable(variable, value, message):
    with pytest.raises(ConfigError) as error:
        DetectorConfig.from_env({variable: value})
    assert message in str(error.value)


def test_defaults_are_unchanged_by_the_new_inputs():
    assert DetectorConfig().model_features == ("size_share", "price_deviation_bps", "momentum_bps", "two_sided_intensity")


@pytest.mark.parametrize("text", ["\u0663", "\u0661\u0660\u0660", "nan", "inf", "-inf", "1e400", "", "0x10"])
@pytest.mark.parametrize("entry", ["engine", "incidents", "job", "dashboard", "demo"])
def test_every_entry_point_refuses_an_odd_number_naming_its_variable(entry, text):
    """Other scripts' digits (int() reads them), non-finite numbers and hex: the same refusal everywhere."""
    from connectors.demo import DemoSettings, DemoSettingsError
    from dashboard.config import DashboardConfig, DashboardConfigError
    from flows.settings import JobSettings, SettingsError
    from models.incidents import IncidentSettings

    variable, read, error = {
        "engine": ("DETECTOR_RETRAIN_EVERY", DetectorConfig.from_env, ConfigError),
        "incidents": ("DETECTOR_INCIDENT_QUIET_TRADES", IncidentSettings.from_env, ConfigError),
        "job": ("INPUT_BATCH_SIZE", JobSettings.from_env, SettingsError),
        "dashboard": ("DASHBOARD_BUFFER_SIZE", DashboardConfig.from_env, DashboardConfigError),
        "demo": ("DEMO_TRADES", DemoSettings.from_env, DemoSettingsError),
    }[entry]
    with pytest.raises(error, match=variable):
        read({variable: text})


@pytest.mark.parametrize("variable, text", [("DETECTOR_FOREST_THRESHOLD", "nan"), ("DETECTOR_IDLE_S", "inf")])
def test_a_float_setting_must_be_finite(variable, text):
    with pytest.raises(ConfigError, match=variable):
        DetectorConfig.from_env({variable: text})
