import pytest

from gridwatch.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("1d", 86400),
        ("1h30m", 5400),
        ("250ms", 0.25),
        ("2w", 1209600),
    ],
)
def test_durations_read_as_operators_write_them(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5", "5 minutes", "m5", "1h 30m", "-1s", "1.5", 30, None, "1hx"])
def test_anything_else_is_an_error(bad):
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(bad)


def test_format_is_the_shortest_spelling():
    assert [format_duration(s) for s in (86400, 7200, 90, 1.5)] == ["1d", "2h", "90s", "1.5s"]
