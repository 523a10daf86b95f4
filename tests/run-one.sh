#!/bin/sh
# Runs one test script under a time limit (TEST_TIMEOUT seconds, default 900).
# A test that runs out of time fails; it never hangs the suite.
exec timeout -k 15 "${TEST_TIMEOUT:-900}" bash "$@"
