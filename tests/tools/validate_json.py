#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Validate a JSON document against a JSON Schema (draft-07 or 2020-12, from "$schema").

Usage: validate_json.py SCHEMA.json FILE.json

Exit status: 0 the document is valid; 1 it is not (each violation is printed on stderr with its
JSON path); 2 the check could not run (usage, unreadable or malformed file, invalid schema, or
the jsonschema module is missing: apt install python3-jsonschema). Used by the unit test of the
JSON writer (tests/unit/test_out.c) and by the integration tests; needs only the standard
library and jsonschema >= 4 (Debian 12 ships 4.10).
"""

import json
import sys


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def main(argv):
    if len(argv) != 3:
        print("usage: validate_json.py SCHEMA.json FILE.json", file=sys.stderr)
        return 2
    try:
        import jsonschema
        import jsonschema.validators
    except ImportError:
        print("validate_json.py: the jsonschema module is missing; "
              "install python3-jsonschema", file=sys.stderr)
        return 2
    try:
        schema = load(argv[1])
        doc = load(argv[2])
    except (OSError, ValueError) as e:
        print(f"validate_json.py: {e}", file=sys.stderr)
        return 2
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as e:
        print(f"validate_json.py: {argv[1]} is not a valid schema: {e.message}", file=sys.stderr)
        return 2
    errors = sorted(cls(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
    for e in errors:
        path = "$" + "".join(f"[{p!r}]" for p in e.absolute_path)
        print(f"{argv[2]}: {path}: {e.message}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
