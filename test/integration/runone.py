#!/usr/bin/env python3
"""Runs one integration test file with unittest and prints a machine-readable
summary line `@@RESULT {...}` that test/run.py aggregates."""
import importlib.util
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main():
    path = sys.argv[1]
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    suite = unittest.defaultTestLoader.loadTestsFromModule(mod)
    result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = [[str(t), reason] for t, reason in result.skipped]
    passed = result.testsRun - failed - len(skipped)
    sys.stdout.flush()
    print("@@RESULT " + json.dumps({"passed": passed, "failed": failed, "skipped": skipped}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
