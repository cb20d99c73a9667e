"""Build the module a state_dict is loaded into, from ``package.module:factory``.

Importing a module runs its code. Without trust only modules of the installed environment
(the standard library, site-packages, quantviz itself, ``PYTHONPATH``) are imported, and
``sys.path`` is left alone. A module that would come from the weights file's folder or from
the current directory (which ``python -m`` and ``python -c`` put on ``sys.path``) is the
user's - or an attacker's - code: :class:`TrustRequired` (unless that folder is on
``PYTHONPATH`` explicitly). With trust, the weights file's
folder is searched first; the current directory is never added.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import os
import site
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

from torch import nn

from quantviz.model.errors import ModelLoadError, TrustRequired

__all__ = ["build_arch", "is_user_code"]


_USER_MODULES: dict[str, Path] = {}
"""Modules imported with trust that are not installed code (name -> where from)."""


def _installed_roots() -> list[Path]:
    roots: list[str] = []
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            roots.append(p)
    with contextlib.suppress(AttributeError):  # some embedded interpreters lack it
        roots.extend(site.getsitepackages())
    user = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    if isinstance(user, str):
        roots.append(user)
    roots.append(str(Path(__file__).resolve().parents[1]))  # the quantviz package itself
    return [Path(r).resolve() for r in roots]


def _under(p: Path, root: Path) -> bool:
    return p == root or root in p.parents


def _origins(spec: importlib.machinery.ModuleSpec) -> list[Path]:
    if spec.origin and spec.origin not in ("built-in", "frozen"):
        return [Path(spec.origin)]
    return [Path(p) for p in (spec.submodule_search_locations or [])]


def _explicit_paths() -> list[Path]:
    """Folders the user put on ``PYTHONPATH`` on purpose: part of their environment."""
    raw = os.environ.get("PYTHONPATH", "")
    return [Path(p).resolve() for p in raw.split(os.pathsep) if p]


def _path_entry(origin: Path, depth: int) -> Path | None:
    """The ``sys.path`` folder a module of ``depth`` dotted parts was found in."""
    up = depth if origin.is_file() and origin.stem == "__init__" else depth - 1
    try:
        return origin.parents[up]
    except IndexError:
        return None


def is_user_code(spec: importlib.machinery.ModuleSpec, folder: Path, depth: int = 1) -> Path | None:
    """Where ``spec`` would be imported from, if that is user code (else None).

    User code is found through the current directory (which ``python -m`` / ``-c`` put on
    ``sys.path`` implicitly) or lies in ``folder`` (the weights file's), unless it is under the
    standard library, site-packages or quantviz's own package, or that folder is on
    ``PYTHONPATH`` explicitly. ``depth`` is the number of dotted parts of the module's name.
    """
    installed = _installed_roots()
    explicit = _explicit_paths()
    weights, cwd = folder.resolve(), Path.cwd().resolve()
    for origin in _origins(spec):
        p = origin.resolve()
        if any(_under(p, r) for r in installed):
            continue
        entry = _path_entry(p, depth)
        if entry is not None and entry in explicit:
            continue
        if entry in (cwd, weights) or _under(p, weights):
            return origin
    return None


def _import_untrusted(path: Path, mod_name: str) -> ModuleType:
    """Import ``mod_name`` only if every level of it is installed code (no sys.path edits)."""
    folder = path.resolve().parent
    parts = mod_name.split(".")
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        if name in _USER_MODULES:  # imported with trust earlier: still user code
            raise TrustRequired(
                path,
                f"architecture module {name!r} is user code imported earlier with trust from "
                f"{_USER_MODULES[name]}; calling its factory runs that code",
            )
        if name in sys.modules:  # an installed module already imported: importing runs nothing
            continue
        try:
            spec = importlib.util.find_spec(name)  # imports the (already vetted) parent only
        except (ImportError, ValueError) as exc:
            raise ModelLoadError(
                f"{path}: architecture module {mod_name!r} not found ({exc})"
            ) from None
        if spec is None:
            beside = importlib.machinery.PathFinder.find_spec(parts[0], [str(folder)])
            if beside is not None:
                where = _origins(beside)[0] if _origins(beside) else folder / parts[0]
                raise TrustRequired(
                    path,
                    f"architecture module {mod_name!r} is not an installed package; it would be "
                    f"imported from {where}, which runs that file",
                )
            raise ModelLoadError(
                f"{path}: architecture module {mod_name!r} not found (not an installed "
                f"package, and {parts[0]!r} is not next to the weights in {folder})"
            )
        user = is_user_code(spec, folder, i)
        if user is not None:
            raise TrustRequired(
                path,
                f"architecture module {name!r} is not an installed package; it would be "
                f"imported from {user}, which runs that file",
            )
    try:
        return importlib.import_module(mod_name)
    except Exception as exc:
        raise ModelLoadError(
            f"{path}: importing architecture module {mod_name!r} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _import_trusted(path: Path, mod_name: str) -> ModuleType:
    """Import ``mod_name``, searching the weights file's folder first (trusted user code)."""
    folder = str(path.resolve().parent)
    before = set(sys.modules)
    sys.path.insert(0, folder)
    try:
        return importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        raise ModelLoadError(
            f"{path}: architecture module {mod_name!r} not found ({exc}; searched the "
            f"installed packages and {folder})"
        ) from None
    except Exception as exc:
        raise ModelLoadError(
            f"{path}: importing architecture module {mod_name!r} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
        installed = _installed_roots()
        for name in set(sys.modules) - before:
            spec = getattr(sys.modules[name], "__spec__", None)
            origins = _origins(spec) if spec is not None else []
            if origins and not any(_under(o.resolve(), r) for o in origins for r in installed):
                _USER_MODULES[name] = origins[0]


def build_arch(path: Path, arch: str, *, trust: bool) -> nn.Module:
    """Import ``package.module`` of ``arch`` and call its ``factory()`` (no arguments)."""
    mod_name, sep, attr = arch.partition(":")
    if not sep or not mod_name or not attr:
        raise ModelLoadError(f"{path}: architecture must be package.module:factory, got {arch!r}")
    names = mod_name.split(".") + attr.split(".")
    if not all(n.isidentifier() for n in names):
        raise ModelLoadError(f"{path}: architecture must be package.module:factory, got {arch!r}")
    if not trust and any(n.startswith("__") for n in attr.split(".")):
        raise ModelLoadError(f"{path}: architecture factory {attr!r} names a dunder attribute")
    mod = _import_trusted(path, mod_name) if trust else _import_untrusted(path, mod_name)
    factory: object = mod
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise ModelLoadError(f"{path}: {mod_name!r} has no attribute {attr!r}")
    if not callable(factory):
        raise ModelLoadError(f"{path}: architecture {arch!r} is not callable")
    try:
        module = factory()
    except Exception as exc:
        raise ModelLoadError(
            f"{path}: calling {arch}() failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(module, nn.Module):
        raise ModelLoadError(f"{path}: {arch}() returned {type(module).__name__}, not nn.Module")
    return module
