"""Feedback enters the event history with its topic (when known) as the event type and its sentiment as the value."""

from __future__ import annotations

import pandas as pd

from churnsense.data.framing import feedback_types


def test_topic_becomes_the_event_type_and_missing_topics_stay_plain_feedback():
    fb = pd.DataFrame({"topic": ["billing", None, " Network ", ""]})
    assert feedback_types(fb).tolist() == ["feedback_billing", "feedback", "feedback_network", "feedback"]
    assert feedback_types(pd.DataFrame({"text": ["hi"]})).tolist() == ["feedback"]
