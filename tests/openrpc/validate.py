#!/usr/bin/env python3
"""Validates an OpenRPC document (JSON on stdin) against the official OpenRPC
meta-schema vendored next to this file, and checks that every `$ref` inside it
resolves. Prints `ok` and exits 0, or prints the errors and exits 1."""

import json
import pathlib
import sys

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

HERE = pathlib.Path(__file__).parent
OPENRPC = json.loads((HERE / "openrpc-meta-schema-1.14.9.json").read_text())
JSON_SCHEMA_TOOLS = json.loads((HERE / "json-schema-tools-meta-schema-1.8.0.json").read_text())


def refs(value, path="$"):
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "$ref" and isinstance(v, str):
                yield path, v
            else:
                yield from refs(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from refs(v, f"{path}[{i}]")


def main():
    doc = json.load(sys.stdin)
    tools = Resource(contents=JSON_SCHEMA_TOOLS, specification=DRAFT7)
    registry = Registry().with_resources(
        [
            ("https://meta.json-schema.tools", tools),
            ("https://meta.json-schema.tools/", tools),
            ("https://meta.open-rpc.org/", Resource(contents=OPENRPC, specification=DRAFT7)),
        ]
    )
    # Both schemas name a home-made `$schema`; they are written in draft-07.
    validator = jsonschema.Draft7Validator(OPENRPC, registry=registry)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    # Every schema in the document must itself be a valid draft-07 schema whose
    # `$ref`s resolve inside the document.
    schemas = doc.get("components", {}).get("schemas", {})
    for path, ref in refs(doc):
        prefix = "#/components/schemas/"
        if not ref.startswith(prefix) or ref[len(prefix):] not in schemas:
            errors.append(f"{path}: $ref {ref} does not resolve in the document")
    for name, schema in schemas.items():
        try:
            jsonschema.Draft7Validator.check_schema(schema)
        except jsonschema.SchemaError as e:
            errors.append(f"components.schemas.{name}: {e.message}")
    if errors:
        print("\n".join(errors))
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
