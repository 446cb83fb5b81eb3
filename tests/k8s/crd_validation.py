"""Validate custom resources offline against their upstream CustomResourceDefinitions.

A CRD's ``openAPIV3Schema`` is a structural schema; it becomes a JSON Schema by dropping the
``x-kubernetes-*`` extensions, mapping ``x-kubernetes-int-or-string`` to integer|string and
``nullable`` to an added null type. In strict mode every object schema that lists properties and
does not preserve unknown fields gets ``additionalProperties: false``: the API server would prune
an unknown field silently (a typo such as ``modelFormt:`` would just vanish), here it is an error.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

# The Strimzi CRDs are megabytes of YAML: the C loader reads them ~10x faster.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_EMBEDDED_FIELDS = {
    "apiVersion": {"type": "string"},
    "kind": {"type": "string"},
    "metadata": {"type": "object"},
}


def to_json_schema(node: Any, strict: bool) -> Any:
    """Translate one structural-schema node (recursively) to JSON Schema."""
    if isinstance(node, list):
        return [to_json_schema(item, strict) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v, strict) for k, v in node.items()
           if not k.startswith("x-kubernetes-") and k != "nullable"}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("x-kubernetes-embedded-resource"):
        out.setdefault("properties", {})
        for name, schema in _EMBEDDED_FIELDS.items():
            out["properties"].setdefault(name, schema)
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    preserves = node.get("x-kubernetes-preserve-unknown-fields", False)
    if strict and "properties" in node and not preserves and "additionalProperties" not in node:
        out["additionalProperties"] = False
    return out


@dataclass
class CrdRegistry:
    """JSON Schemas of every (apiVersion, kind) served by the CRDs in a directory."""

    strict: bool = True
    schemas: dict[tuple[str, str], dict] = field(default_factory=dict)

    @classmethod
    def from_directory(cls, directory: Path, strict: bool = True) -> CrdRegistry:
        registry = cls(strict=strict)
        for path in sorted(directory.glob("*.yaml")):
            for doc in yaml.load_all(path.read_text(), Loader=_Loader):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    registry.add(doc)
        return registry

    def add(self, crd: dict) -> None:
        spec = crd["spec"]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            schema = to_json_schema(copy.deepcopy(version["schema"]["openAPIV3Schema"]),
                                    self.strict)
            key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
            self.schemas[key] = schema

    def knows(self, doc: dict) -> bool:
        return (doc.get("apiVersion"), doc.get("kind")) in self.schemas

    def errors(self, doc: dict) -> list[str]:
        """Validation errors of one custom resource ('' path means the document root)."""
        schema = self.schemas[(doc["apiVersion"], doc["kind"])]
        validator = jsonschema.Draft7Validator(schema)
        name = doc.get("metadata", {}).get("name", "?")
        return [f"{doc['kind']}/{name} at .{'.'.join(map(str, e.absolute_path))}: {e.message}"
                for e in validator.iter_errors(doc)]


def load_documents(text: str) -> list[dict]:
    """The non-empty YAML documents of a manifest stream."""
    return [doc for doc in yaml.load_all(text, Loader=_Loader) if doc]


def validate_custom_resources(registry: CrdRegistry, docs: Iterable[dict]) -> list[str]:
    """Errors of every document whose kind the registry knows."""
    errors: list[str] = []
    for doc in docs:
        if registry.knows(doc):
            errors.extend(registry.errors(doc))
    return errors
