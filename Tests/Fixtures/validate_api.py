#!/usr/bin/env python3
"""Validates admin API answers (and the CLI's --json output) against docs/schema/*.json.

    validate_api.py SCHEMA_DIR SCHEMA=FILE ...

Each FILE holds one JSON document; SCHEMA names docs/schema/SCHEMA.json. Besides the
schema, every key must be snake_case (the keys of maps keyed by data, such as `applied`
and `window.tracks`, are names, not keys). Prints one line per document; exit 0 when all
pass, 1 otherwise."""

import json
import os
import re
import sys

import jsonschema

SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
# Objects whose keys are data (service, track, endpoint or field names).
MAPS = {"applied", "rejected", "tracks", "endpoints", "windows"}


def style_problems(value, path="$"):
    problems = []
    if isinstance(value, dict):
        for key, item in value.items():
            if not SNAKE.match(key):
                problems.append(f"{path}: key '{key}' is not snake_case")
            if key in MAPS and isinstance(item, dict):
                for name, inner in item.items():
                    problems += style_problems(inner, f"{path}.{key}[{name}]")
            else:
                problems += style_problems(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problems += style_problems(item, f"{path}[{index}]")
    return problems


def validator_for(schema, store):
    cls = jsonschema.validators.validator_for(schema)
    try:  # jsonschema >= 4.18
        from referencing import Registry, Resource
        registry = Registry().with_resources((uri, Resource.from_contents(doc)) for uri, doc in store.items())
        return cls(schema, registry=registry, format_checker=cls.FORMAT_CHECKER)
    except ImportError:  # Debian's 4.10
        resolver = jsonschema.RefResolver(base_uri=schema["$id"], referrer=schema, store=store)
        return cls(schema, resolver=resolver, format_checker=cls.FORMAT_CHECKER)


def main():
    folder = sys.argv[1]
    store = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as handle:
                doc = json.load(handle)
            store[doc["$id"]] = doc
    failed = 0
    for pair in sys.argv[2:]:
        schema_name, path = pair.split("=", 1)
        with open(os.path.join(folder, schema_name + ".json")) as handle:
            schema = json.load(handle)
        with open(path) as handle:
            text = handle.read()
        try:
            document = json.loads(text)
        except ValueError as error:
            print(f"FAIL {schema_name} {path}: not JSON ({error}): {text[:200]}")
            failed += 1
            continue
        problems = [f"{'/'.join(str(p) for p in e.absolute_path) or '$'}: {e.message}"
                    for e in validator_for(schema, store).iter_errors(document)]
        problems += style_problems(document)
        if problems:
            failed += 1
            print(f"FAIL {schema_name} {path}:")
            for problem in problems:
                print(f"  {problem}")
        else:
            print(f"ok   {schema_name} {path}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
