#!/usr/bin/env python3
"""Validates Kubernetes objects against the API schemas of several Kubernetes versions.

Usage: python3 scripts/validate-k8s.py [--versions 1.29,1.30,1.31] FILE.yaml...

Every document of every file is checked with the PyPI package kubernetes-validate in
strict mode (unknown fields are errors) through its Python API, once per Kubernetes
version. Its command line is not used: it exits 0 on a kind it has no schema for, and
here an unknown kind is a failure. Prints one line per document and version; exits 1 if
any check fails (or nothing was checked), 2 on bad usage.

Installs kubernetes-validate and PyYAML with pip when they are missing.

CI runs it on `invok export crd` and `invok export kubernetes -f manifests/`
(scripts/test.sh).
"""

import argparse
import importlib
import os
import subprocess
import sys

DEFAULT_VERSIONS = "1.29,1.30,1.31"


def ensure(module, package):
    """Imports `module`, installing `package` with pip first when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError:
        pass
    print(f"installing {package} with pip", file=sys.stderr)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", package]
    env = dict(os.environ, PIP_ROOT_USER_ACTION="ignore")
    if subprocess.run(pip, env=env).returncode != 0:
        # A distribution's Python refuses installs outside a venv (PEP 668).
        subprocess.run(pip + ["--break-system-packages"], env=env, check=True)
    importlib.invalidate_caches()
    return importlib.import_module(module)


def major_minor(version):
    return ".".join(version.split(".")[:2])


def as_tuple(version):
    return tuple(int(p) for p in major_minor(version).split("."))


def choose_versions(kv, wanted):
    """The versions to check: the wanted ones, or the newest three the package knows."""
    supported = sorted({major_minor(v) for v in kv.utils.all_versions()}, key=as_tuple)
    missing = [v for v in wanted if v not in supported]
    print(
        f"kubernetes-validate {kv.version.__version__} has schemas for "
        f"{supported[0]} to {supported[-1]}",
        file=sys.stderr,
    )
    if missing:
        newest = supported[-3:]
        print(
            f"no schemas for {', '.join(missing)}: checking the newest three instead, "
            f"{', '.join(newest)}",
            file=sys.stderr,
        )
        return newest
    return wanted


def describe(doc):
    name = (doc.get("metadata") or {}).get("name", "?")
    return f"{doc.get('kind', '?')}/{name}"


def failure_message(kv, error):
    if isinstance(error, kv.ValidationError):
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return f"{where}: {error.message}"
    # SchemaNotFoundError and friends keep their text in .message, not in args.
    return getattr(error, "message", None) or f"{type(error).__name__}: {error}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", metavar="FILE", help="YAML files to check")
    parser.add_argument(
        "--versions",
        default=DEFAULT_VERSIONS,
        help=f"comma-separated Kubernetes versions (default {DEFAULT_VERSIONS})",
    )
    args = parser.parse_args()

    yaml = ensure("yaml", "PyYAML")
    kv = ensure("kubernetes_validate", "kubernetes-validate")
    versions = choose_versions(kv, [major_minor(v.strip()) for v in args.versions.split(",")])

    checked = failed = 0
    for path in args.files:
        with open(path, encoding="utf-8") as f:
            try:
                docs = [d for d in yaml.safe_load_all(f) if d is not None]
            except yaml.YAMLError as e:
                print(f"FAIL  {path}: not YAML: {e}")
                failed += 1
                continue
        if not docs:
            print(f"FAIL  {path}: no document")
            failed += 1
        for index, doc in enumerate(docs, start=1):
            where = f"{path}#{index} {describe(doc) if isinstance(doc, dict) else '?'}"
            for version in versions:
                checked += 1
                try:
                    if not isinstance(doc, dict):
                        raise TypeError("a document must be a mapping")
                    kv.validate(doc, version, strict=True)
                    print(f"ok    {version}  {where}")
                except Exception as e:  # noqa: BLE001 - any exception is a failure
                    print(f"FAIL  {version}  {where}: {failure_message(kv, e)}")
                    failed += 1

    print(f"checked {len(args.files)} file(s) for Kubernetes {', '.join(versions)} (strict)", file=sys.stderr)
    # The closing line CI reads: "N passed, N failed".
    print(f"kubernetes-validate: {checked - failed} passed, {failed} failed")
    return 1 if failed or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
