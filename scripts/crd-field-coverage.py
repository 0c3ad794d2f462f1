#!/usr/bin/env python3
"""How many of Flux's spec fields plumb's generated CRDs serve.

    scripts/crd-field-coverage.py [FLUX_CRDS_DIR] [--missing]

Compares every `spec` field path (nested objects and array items included) of the served
version of each Flux CRD with plumb's CRD of the same kind in deploy/crds/, for the kinds
plumb serves, and prints served/total per kind and overall; `--missing` lists the paths
plumb lacks. A field below one whose schema keeps unknown fields counts as served (the API
server stores it). FLUX_CRDS_DIR defaults to ../shared/flux-crds (Flux 2.9's published CRDs).
A field in the CRD is not yet a field acted on: fields plumb parses but does not act on are
reported in status (crates/plumb-api/src/unsupported.rs).
"""
import glob
import os
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def served_schema(crd):
    """(kind, version, openAPIV3Schema) of the storage version."""
    kind = crd["spec"]["names"]["kind"]
    versions = crd["spec"]["versions"]
    v = next((v for v in versions if v.get("storage")), versions[0])
    return kind, v["name"], v["schema"]["openAPIV3Schema"]


def paths(schema, prefix, kept=None):
    """Every field path under `schema` (array items as `[]`); paths whose schema keeps
    unknown fields (`x-kubernetes-preserve-unknown-fields`) are added to `kept`."""
    out = set()
    props = schema.get("properties") or {}
    for name, sub in props.items():
        p = f"{prefix}.{name}"
        out.add(p)
        if kept is not None and sub.get("x-kubernetes-preserve-unknown-fields"):
            kept.add(p)
        out |= paths(sub, p, kept)
    items = schema.get("items")
    if isinstance(items, dict):
        out |= paths(items, prefix + "[]", kept)
    return out


def served(path, mine, kept):
    """In plumb's schema, or below a field whose schema keeps everything (not pruned)."""
    return path in mine or any(path.startswith(k + ".") or path.startswith(k + "[]") for k in kept)


def load(pattern):
    crds = {}
    for f in glob.glob(pattern, recursive=True):
        with open(f) as fh:
            for doc in yaml.safe_load_all(fh):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    kind, version, schema = served_schema(doc)
                    kept = set()
                    crds[kind] = (version, paths(schema["properties"]["spec"], "spec", kept), kept)
    return crds


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    flux_dir = args[0] if args else os.path.join(ROOT, "..", "shared", "flux-crds")
    flux = load(os.path.join(flux_dir, "**", "*.yaml"))
    ours = load(os.path.join(ROOT, "deploy", "crds", "*.yaml"))
    if not flux:
        sys.exit(f"no Flux CRDs under {flux_dir}")
    total_served = total = 0
    print(f"{'kind':<22} {'version':<9} {'served':>7} {'of':>5} {'%':>7}")
    for kind in sorted(ours):
        if kind not in flux:
            continue
        version, theirs, _ = flux[kind]
        _, mine, kept = ours[kind]
        ok = {p for p in theirs if served(p, mine, kept)}
        served_n = len(ok)
        total_served += served_n
        total += len(theirs)
        print(f"{kind:<22} {version:<9} {served_n:>7} {len(theirs):>5} {100 * served_n / len(theirs):>6.1f}%")
        if "--missing" in sys.argv:
            for p in sorted(theirs - ok):
                print(f"    missing {p}")
    print(f"{'all served kinds':<32} {total_served:>7} {total:>5} {100 * total_served / total:>6.1f}%")


if __name__ == "__main__":
    main()
