"""The form's field parsers, for any text at all: a value in range, or a ValueError whose
message is one short line a person can act on (what is wrong, what to enter instead).
Property-based (hypothesis), so odd input (huge numbers, NaN, other scripts' digits,
control characters, decimal commas) is tried, not only the cases someone thought of."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ddpm_gui.fields import parse_float, parse_int, parse_int_list

MAX_MESSAGE = 120

# Text a person might type or paste: anything, and number-like text, which reaches the
# interesting branches far more often.
number_like = st.from_regex(r"\A\s?[+-]?[0-9,._eE]{0,12}(inf|nan)?\s?\Z")
any_text = st.one_of(st.text(max_size=40), number_like, st.integers().map(str), st.floats().map(repr))

ranges_int = st.tuples(st.integers(-10**6, 10**6), st.integers(0, 10**9)).map(lambda t: (t[0], t[0] + t[1]))


def assert_actionable(message: str, lo, hi) -> None:
    assert message and "\n" not in message and len(message) <= MAX_MESSAGE, message
    # It says what would be accepted: the range, or an example of what to write.
    assert "use" in message or "e.g." in message or "enter" in message or "must be" in message, message


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=any_text, bounds=ranges_int)
@example(text="9" * 5000, bounds=(1, 100))
@example(text="1,2", bounds=(1, 100))
@example(text="١٢", bounds=(1, 100))  # Arabic-Indic digits: a whole number all the same
def test_parse_int_accepts_in_range_or_says_why(text, bounds):
    lo, hi = bounds
    try:
        value = parse_int(text, lo, hi)
    except ValueError as e:
        assert_actionable(str(e), lo, hi)
        if "out of range" in str(e):
            assert f"{lo:,}" in str(e) and f"{hi:,}" in str(e)
    else:
        assert isinstance(value, int) and lo <= value <= hi


@given(value=st.integers(-10**12, 10**12), pad=st.sampled_from(["", " ", "\t"]))
def test_parse_int_reads_what_it_shows(value, pad):
    for text in (str(value), f"{value:,}", f"{pad}{value}{pad}"):
        assert parse_int(text, -10**12, 10**12) == value


@settings(max_examples=400, deadline=None)
@given(text=any_text)
@example(text="nan")
@example(text="-inf")
@example(text="1,5")
@example(text="1e999")
def test_parse_float_accepts_in_range_or_says_why(text):
    lo, hi = 1e-8, 1.0  # the learning rate's range
    try:
        value = parse_float(text, lo, hi)
    except ValueError as e:
        assert_actionable(str(e), lo, hi)
    else:
        assert math.isfinite(value) and lo <= value <= hi


@given(value=st.floats(0.0, 24 * 60.0))
def test_parse_float_reads_what_it_shows(value):
    assert parse_float(repr(value), 0.0, 24 * 60.0) == value
    assert parse_float(f"{value:g}", 0.0, 24 * 60.0) == pytest.approx(value, rel=1e-5, abs=1e-5)


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(any_text, st.lists(st.integers(-5, 100), max_size=6).map(lambda v: ",".join(map(str, v)))))
def test_parse_int_list_accepts_in_range_or_says_why(text):
    try:
        values = parse_int_list(text, 1, 64)
    except ValueError as e:
        assert_actionable(str(e), 1, 64)
    else:
        assert values and all(isinstance(v, int) and 1 <= v <= 64 for v in values)


@given(values=st.lists(st.integers(1, 64), min_size=1, max_size=6), sep=st.sampled_from([",", ", ", " , "]))
def test_parse_int_list_reads_what_it_shows(values, sep):
    assert parse_int_list(sep.join(map(str, values)), 1, 64) == tuple(values)


def test_messages_name_the_problem():
    cases = [
        (lambda: parse_int("abc", 1, 65536), "'abc' is not a whole number: use 1 to 65,536"),
        (lambda: parse_int("0", 1, 65536), "0 is out of range: use 1 to 65,536"),
        (lambda: parse_int("1,2", 1, 100), "'1,2' is not a whole number: use 1 to 100"),
        (lambda: parse_float("1,5", 0, 10), "'1,5': write decimals with a point, e.g. 1.5"),
        (lambda: parse_float("nan", 1e-8, 1), "'nan' is not a usable number: use 1e-08 to 1"),
        (lambda: parse_int_list("1,x", 1, 64), "'1,x' is not a comma-separated list of whole numbers, e.g. 1,2,4"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError) as e:
            call()
        assert str(e.value) == message


def test_every_training_form_field_refuses_with_its_name(qtbot, state):
    """Whatever is typed in a field, the form never raises: it accepts the value, or
    disables Start with the field's name and the reason, and marks that field red."""
    from ddpm_gui.training_form import TrainingForm

    form = TrainingForm(state)  # one form for every example: building one each time is slow
    qtbot.addWidget(form)
    # label shown in the reason, the engine's name for it (its validate() may refuse too)
    fields = {
        form.image_size: ("Image size", "data.image_size"),
        form.dim: ("Width", "model."),
        form.timesteps: ("Steps T", "schedule.timesteps"),
        form.batch: ("Batch size", "train.batch_size"),
        form.lr: ("Learning rate", "train.lr"),
        form.length: ("Train for", "train.steps"),
        form.preview_every: ("Preview every", "train.preview_every"),
        form.seed: ("Seed", "train.seed"),
        form.autosave: ("Autosave every", "train.autosave_minutes"),
    }
    assert form.check()[0] is not None  # the defaults are valid: any refusal is the field's

    @settings(max_examples=40, deadline=None)
    @given(text=any_text)
    def check(text):
        for field, names in fields.items():
            old = field.text()
            field.setText(text)
            cfg, reason = form.check()
            refused = "Not accepted" in field.toolTip()
            field.setText(old)
            if cfg is None:
                assert reason and "\n" not in reason and len(reason) < 300, (names, reason)
                assert any(name in reason for name in names), (names, reason)
                assert refused, (names, reason)
            else:
                assert reason is None and not refused

    check()
