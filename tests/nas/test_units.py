import argparse

import pytest

from nas.units import (
    arg_flops,
    format_count,
    format_duration,
    format_flops,
    format_ms,
    parse_count,
    parse_duration,
    parse_flops,
    parse_latency,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2GFLOPs", 2_000_000_000),
        ("2 GFLOPs", 2_000_000_000),
        ("500MFLOPs", 500_000_000),
        ("2e9", 2_000_000_000),
        ("2G", 2_000_000_000),
        ("1.5 gflops", 1_500_000_000),
        ("750M", 750_000_000),
        ("3 MFLOPS", 3_000_000),
        ("12k", 12_000),
        ("1T", 10**12),
        ("  4.1 GFLOP ", 4_100_000_000),
        ("123456", 123_456),
    ],
)
def test_flops_forms_the_issue_lists_parse_to_multiply_adds(text, expected):
    assert parse_flops(text) == expected


@pytest.mark.parametrize(
    "text, match",
    [
        ("2GB", "unknown unit 'B'"),
        ("2 GFLOPs/s", "not a number"),
        ("-1G", "greater than 0"),
        ("0", "greater than 0"),
        ("abc", "not a number"),
        ("", "not a number"),
        ("1e999", "finite"),
        ("2 params", "unknown unit"),
    ],
)
def test_bad_flops_are_refused_with_the_value_and_examples(text, match):
    with pytest.raises(ValueError, match=match) as e:
        parse_flops(text)
    assert repr(text) in str(e.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("10M", 10_000_000),
        ("10 M", 10_000_000),
        ("2.5M params", 2_500_000),
        ("500k", 500_000),
        ("500K", 500_000),
        ("1e7", 10_000_000),
        ("10m", 10_000_000),
        ("42", 42),
    ],
)
def test_counts(text, expected):
    assert parse_count(text) == expected


@pytest.mark.parametrize("text", ["10MB", "-3M", "0k", "many"])
def test_bad_counts(text):
    with pytest.raises(ValueError, match="parameter count"):
        parse_count(text)


@pytest.mark.parametrize(
    "text, expected",
    [("15ms", 15.0), ("15 ms", 15.0), ("0.5s", 500.0), ("800us", 0.8), ("15", 15.0), ("2.5", 2.5)],
)
def test_latency_in_milliseconds(text, expected):
    assert parse_latency(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["15 sec", "-5ms", "0ms", "fast", "1e999"])
def test_bad_latency(text):
    with pytest.raises(ValueError, match="latency"):
        parse_latency(text)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("90", 90.0),
        ("90s", 90.0),
        ("30m", 1800.0),
        ("1.5h", 5400.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("2d", 172800.0),
        ("0.5", 0.5),
    ],
)
def test_durations_in_seconds(text, expected):
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["0h", "1x", "h", "-5", "inf", "nan", "30 minutes"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_argparse_wrapper_turns_value_errors_into_argument_type_errors():
    assert arg_flops("2G") == 2_000_000_000
    with pytest.raises(argparse.ArgumentTypeError, match="unknown unit"):
        arg_flops("2GB")
    parser = argparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--budget", type=arg_flops)
    with pytest.raises(argparse.ArgumentError, match="FLOPs budget '2x'"):
        parser.parse_args(["--budget", "2x"])


def test_formatters_round_trip_through_the_parsers():
    assert format_flops(2.1e9) == "2.10 GFLOPs"
    assert parse_flops(format_flops(2.1e9).replace(" ", "")) == 2_100_000_000
    assert format_count(11_200_000) == "11.20M"
    assert parse_count(format_count(11_200_000)) == 11_200_000
    assert format_ms(12.345) == "12.3 ms"
    assert format_ms(None) == "-"
    assert format_duration(5400) == "1h30m"
    assert format_duration(75) == "1m15s"
    assert format_duration(9) == "9s"
    assert format_duration(None) == "?"
