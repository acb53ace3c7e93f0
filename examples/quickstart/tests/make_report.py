"""Writes a small JUnit XML report, as a test runner would."""

import sys

version = sys.argv[1] if len(sys.argv) > 1 else "?"
print(
    f"""<?xml version="1.0" encoding="utf-8"?>
<testsuite name="quickstart-{version}" tests="3" failures="0" errors="0" skipped="1">
  <testcase classname="app" name="test_builds"/>
  <testcase classname="app" name="test_greets"/>
  <testcase classname="app" name="test_optional"><skipped/></testcase>
</testsuite>"""
)
