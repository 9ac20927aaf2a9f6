"""core.invocations: the error a person should see in a Run Command invocation's output."""

from __future__ import annotations

from patchcycle.core.invocations import ERROR_MARKER, invocation_error, plugin_output


def test_invocation_error_takes_the_text_after_the_last_error_marker() -> None:
    output = f"Installing 3 patches\nInstalled 2\n\n{ERROR_MARKER}\nFailed to install:\n   ALAS-1   \n"
    assert invocation_error(output) == "Failed to install: ALAS-1"
    twice = f"out\n{ERROR_MARKER}\nfirst\n{ERROR_MARKER}\nsecond error"
    assert invocation_error(twice) == "second error"
    assert invocation_error(f"out\n{ERROR_MARKER}\n" + "x" * 400) == "x" * 300
    assert invocation_error(f"{ERROR_MARKER} " + "y " * 20, limit=10) == "y y y y y "[:10]


def test_invocation_error_without_the_marker_is_the_last_non_blank_line() -> None:
    assert invocation_error("starting\nscanning\nexit status 2\n\n   \n") == "exit status 2"
    assert invocation_error("  only   line  ") == "only line"
    assert invocation_error("") == ""
    assert invocation_error("\n \n") == ""
    assert invocation_error("z" * 500, limit=50) == "z" * 50


def test_plugin_output_joins_every_plugin_and_takes_the_first_exit_code() -> None:
    invocation = {"CommandPlugins": [{"ResponseCode": 3, "Output": "first"}, {"ResponseCode": 0, "Output": "second"}]}
    assert plugin_output(invocation) == (3, "first\nsecond")
    assert plugin_output({}) == (-1, "")
