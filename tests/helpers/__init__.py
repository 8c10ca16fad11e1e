"""Test harness for roost: a real server per test and official-SDK scenarios in child processes.

The parent side (`server`, `scenario`) starts `python -m roost serve` and runs scenario
functions in a child interpreter, so that a Rust panic in the official SDK fails one test
instead of aborting the test run. The child side (`sdk`) holds small helpers the scenarios
use: tokens, joining, event recording and bounded waits.
"""
