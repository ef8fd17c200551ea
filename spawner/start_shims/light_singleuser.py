"""``python -m light_singleuser``: jupyterhub-singleuser without what a workspace's server never uses.

1. The hub's own server code. ``import jupyterhub.singleuser`` runs modules that import parts of
   the hub: ``jupyterhub.log`` imports ``jupyterhub.handlers.pages`` (for one ``isinstance`` check
   against the hub's health-check page), which imports all the hub's handlers, its ORM,
   SQLAlchemy and Alembic; ``jupyterhub.scopes`` (for one function of the token check) imports the
   ORM and the roles; ``jupyterhub.utils`` imports SQLAlchemy for one ``except`` clause of the
   hub's database code. About 0.3 CPU-seconds of every start (docs/class-start.md).

   Those modules are *deferred* (``DeferredModule``): each is the module it is, made from its own
   spec, but its code runs only when it is used: at the first use of a name it has not got, or an
   ``import`` of it or of a submodule after ``jupyterhub.singleuser`` is imported (then through the
   import system, as a normal import, into the same object). Nothing is replaced; two things are
   given ahead, exactly:

   - the submodules of a deferred package that are imported meanwhile (``sqlalchemy.exc``, for
     that ``except`` clause, is the real one, without ``sqlalchemy/__init__``);
   - to ``jupyterhub.log`` only, ``jupyterhub.handlers.pages.HealthCheckHandler`` for
     ``isinstance(handler, StaticFileHandler | HealthCheckHandler)``: a class that nothing is an
     instance of unless the real page module has run, and then exactly the real class's instances.

   Before deferring anything, the installed JupyterHub's sources are checked for exactly the
   imports and uses above (``plan()``); when they differ, or the deferred import fails, the normal
   import runs and stderr (the hub log) says why: the server starts as ``jupyterhub-singleuser``.

2. ``node yarn.js config`` (``without_yarn_config()``): JupyterLab runs it at import for the npm
   registry of source-extension installs, which cannot happen in a workspace.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import sys
import types
from pathlib import Path

# Deferred, in this order (a package before its submodules).
DEFERRED = ("sqlalchemy", "jupyterhub.orm", "jupyterhub.roles", "jupyterhub.handlers", "jupyterhub.handlers.pages")

# The modules of JupyterHub 6.1 that ``import jupyterhub.singleuser`` runs (app.py: its main()
# without the server extension), and what they import at import time from the deferred modules.
CHECKED = ("__init__.py", "_version.py", "_memoize.py", "_xsrf_utils.py", "httpclient.py", "log.py", "metrics.py",
           "scopes.py", "utils.py", "services/__init__.py", "services/auth.py", "singleuser/__init__.py",
           "singleuser/_decorator.py", "singleuser/_disable_user_config.py", "singleuser/app.py",
           "singleuser/extension.py", "singleuser/mixins.py")
EXPECTED = {
    "log.py": {("jupyterhub.handlers.pages", "HealthCheckHandler")},
    "metrics.py": {("jupyterhub", "orm")},
    "scopes.py": {("sqlalchemy", None), ("jupyterhub", "orm"), ("jupyterhub", "roles")},
    "utils.py": {("sqlalchemy.exc", "SQLAlchemyError")},
}
LOG = "[light_singleuser]"


def _import_time_nodes(tree: ast.AST):
    """The statements a module runs when imported (not the bodies of its functions)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        yield node
        yield from _import_time_nodes(node)


def deferred_imports(tree: ast.AST, module: str) -> set[tuple[str, str | None]]:
    """``(module, name)`` of each import ``module`` runs at import time that reaches a deferred
    module (``name`` None for ``import x``)."""
    package = module.rpartition(".")[0] if not module.endswith(".__init__") else module[:-len(".__init__")]

    def deferred(name: str) -> bool:
        return any(name == d or name.startswith(d + ".") for d in DEFERRED)

    found = set()
    for node in _import_time_nodes(tree):
        if isinstance(node, ast.Import):
            found |= {(alias.name, None) for alias in node.names if deferred(alias.name)}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            origin = ".".join([*base, node.module] if node.module else base) if node.level else node.module
            found |= {(origin, alias.name) for alias in node.names
                      if deferred(origin) or deferred(f"{origin}.{alias.name}")}
    return found


def _isinstance_only(tree: ast.Module, name: str) -> bool:
    """Whether ``name`` is read only inside the class argument of ``isinstance(...)`` calls."""
    allowed = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance" \
                and len(node.args) == 2:
            allowed.update(id(n) for n in ast.walk(node.args[1]) if isinstance(n, ast.Name))
    uses = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == name]
    return bool(uses) and all(id(n) in allowed for n in uses)


def sources_digest(package_dir: Path) -> str:
    """One digest of the ``CHECKED`` sources of a JupyterHub package ("" if one is missing)."""
    digest = hashlib.sha256()
    for path in CHECKED:
        try:
            digest.update(path.encode() + b"\0" + (package_dir / path).read_bytes() + b"\0")
        except OSError:
            return ""
    return digest.hexdigest()


# Digests of sources that plan_from_sources() found right (JupyterHub 6.1.1); any other
# sources are checked at each start (about 0.06 CPU-seconds). A memo that a test keeps true.
CHECKED_DIGESTS = {
    "ec74887f67e6f3cdefd6f6f202ab172adf8003add2713928f78fb51fbc7006eb",
}


def plan(package_dir: Path) -> str | None:
    """Why the installed JupyterHub (its package directory) cannot be started with the deferred
    modules; None when it can."""
    if sources_digest(package_dir) in CHECKED_DIGESTS:
        return None
    return plan_from_sources(package_dir)


def plan_from_sources(package_dir: Path) -> str | None:
    """``plan()`` from the sources themselves: its modules import from the deferred ones exactly
    what ``EXPECTED`` says, and ``jupyterhub.log`` uses ``HealthCheckHandler`` only in
    ``isinstance()``."""
    trees = {}
    for path in CHECKED:
        module = "jupyterhub." + path[:-3].replace("/", ".")
        try:
            trees[path] = tree = ast.parse((package_dir / path).read_text())
        except (OSError, SyntaxError, ValueError) as exc:
            return f"cannot read jupyterhub/{path}: {exc}"
        found, expected = deferred_imports(tree, module), EXPECTED.get(path, set())
        if found != expected:
            return (f"jupyterhub/{path} imports {sorted(found, key=str)} from the deferred modules, "
                    f"not {sorted(expected, key=str)}")
    if not _isinstance_only(trees["log.py"], "HealthCheckHandler"):
        return "jupyterhub/log.py uses HealthCheckHandler other than in isinstance()"
    return None


class _NoInstanceUnlessLoaded(type):
    """isinstance() of the real class once its module ran; before, no object can be one."""

    def __instancecheck__(cls, obj):
        real = _real_class(cls)
        return real is not None and isinstance(obj, real)

    def __subclasscheck__(cls, sub):
        real = _real_class(cls)
        return real is not None and issubclass(sub, real)


def _real_class(standin):
    module = sys.modules.get(standin.__module__)
    real = getattr(module, "__dict__", {}).get(standin.__name__) if module is not None else None
    return real if real is not None and real is not standin else None


class DeferredModule(types.ModuleType):
    """A module whose code runs at the first use of a name it has not got (LazyLoader's idea).

    While ``jupyterhub.singleuser`` is imported, deferred modules are in ``sys.modules`` and a
    deferred package lets its submodules be imported without running (``sqlalchemy.exc``).
    Afterwards they wait outside ``sys.modules``, served by ``DeferredFinder``: an ``import`` of
    one, or of a submodule, runs it through the import system, as a normal import would have, and
    so does the first use of a missing name by a module that holds it (``scopes.orm.User``)."""

    def __getattr__(self, name):
        if name == "__path__":
            path = _PATHS.get(self.__name__)
            if path is None:
                raise AttributeError(name)  # not a package: what the import system asks to know it
            return path
        importer, given = _GIVEN.get((self.__name__, name), (None, None))
        if given is not None and sys._getframe(1).f_globals.get("__name__") == importer:
            return given
        submodule = sys.modules.get(f"{self.__name__}.{name}")
        if submodule is not None:
            return submodule  # as ``from package import submodule`` finds one being imported
        _run(self)
        return getattr(self, name)


# (module, name) -> (importer, what ``from module import name`` gives the importer's module code
# while jupyterhub.singleuser is imported)
_GIVEN: dict[tuple[str, str], tuple[str, object]] = {}
_PATHS: dict[str, list[str]] = {}  # a deferred package's __path__ while jupyterhub.singleuser is imported
_WAITING: dict[str, DeferredModule] = {}  # afterwards: the deferred modules that have not run
_RAN: list[str] = []


def _run(module: DeferredModule) -> None:
    """Import the deferred module for real (through ``DeferredFinder``: the same object)."""
    name = module.__spec__.name
    try:
        importlib.import_module(name)
    except AttributeError as exc:  # not "no such attribute" to the one who asked for one
        raise ImportError(f"running the deferred module {name} failed: {exc}", name=name) from exc
    if type(module) is DeferredModule:
        raise ImportError(f"the deferred module {name} did not run", name=name)


class DeferredFinder:
    """On ``sys.meta_path``: imports a waiting deferred module into its own object."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        module = _WAITING.get(name)
        if module is None:
            return None
        spec = importlib.util.spec_from_loader(name, cls, origin=module.__spec__.origin,
                                               is_package=module.__spec__.submodule_search_locations is not None)
        spec.has_location = module.__spec__.has_location
        return spec

    @staticmethod
    def create_module(spec):
        return _WAITING.pop(spec.name)

    @staticmethod
    def exec_module(module):
        original = module.__spec__ = module.__dict__.pop("_deferred_spec")
        module.__class__ = types.ModuleType
        _RAN.append(original.name)
        original.loader.exec_module(module)


def defer(name: str) -> DeferredModule:
    """Put ``name`` in ``sys.modules`` as a deferred module (its parent first, if not there)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
        raise ImportError(f"{name} has no loader to defer")
    module = importlib.util.module_from_spec(spec)
    if spec.submodule_search_locations is not None:
        _PATHS[name] = module.__dict__.pop("__path__")
    module.__class__ = DeferredModule
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module


def _wait_outside(names) -> None:
    """After the import: the deferred modules leave ``sys.modules`` for ``DeferredFinder``."""
    for name in names:
        module = sys.modules.get(name)
        if type(module) is not DeferredModule:
            continue
        if name in _PATHS:
            module.__path__ = _PATHS.pop(name)
        module._deferred_spec = module.__spec__
        _WAITING[name] = sys.modules.pop(name)
    if _WAITING and DeferredFinder not in sys.meta_path:
        sys.meta_path.insert(0, DeferredFinder)


def _forget(names: set[str]) -> None:
    """Out of ``sys.modules`` and their parent packages, so that the next import runs them anew."""
    for name in sorted(names, key=len, reverse=True):
        module = sys.modules.pop(name, None)
        parent, _, child = name.rpartition(".")
        if module is not None and parent in sys.modules and sys.modules[parent].__dict__.get(child) is module:
            delattr(sys.modules[parent], child)


def import_singleuser(package_dir: Path | None = None):
    """``jupyterhub.singleuser``, imported with the hub's server code deferred where the
    installed JupyterHub allows it (else normally; stderr says why)."""
    if package_dir is None:
        spec = importlib.util.find_spec("jupyterhub")
        package_dir = Path(spec.origin).parent
    why = plan(package_dir)
    if why is None:
        before = set(sys.modules)
        try:
            for name in DEFERRED:
                defer(name)
            pages = "jupyterhub.handlers.pages"
            _GIVEN[pages, "HealthCheckHandler"] = (
                "jupyterhub.log", _NoInstanceUnlessLoaded("HealthCheckHandler", (), {"__module__": pages}))
            singleuser = importlib.import_module("jupyterhub.singleuser")
        except Exception as exc:  # noqa: BLE001 - any failure: start as jupyterhub-singleuser would
            _forget(set(sys.modules) - before | set(DEFERRED))
            _PATHS.clear()
            why = f"the deferred import failed ({type(exc).__name__}: {exc})"
        else:
            ran = [name for name in DEFERRED if type(sys.modules.get(name)) is not DeferredModule]
            if ran:
                print(f"{LOG} imported anyway: {', '.join(ran)}", file=sys.stderr, flush=True)
            _wait_outside(DEFERRED)
            return singleuser
        finally:
            _GIVEN.clear()  # from now on the real class, should anything ask the module for it
    print(f"{LOG} normal import of jupyterhub.singleuser: {why}", file=sys.stderr, flush=True)
    return importlib.import_module("jupyterhub.singleuser")


NO_YARN_CONFIG = {"yarn config": {}, "npm config": {}}  # jupyterlab's own answer where node is not installed


def without_yarn_config() -> str | None:
    """JupyterLab without running ``node yarn.js config`` in the server (about 0.3 CPU-seconds of
    node at every start): its only use there is the npm registry of ``AppOptions`` (for installing
    source extensions into the application directory, which is read-only in a workspace), so the
    server gets the answer JupyterLab gives itself where node is not installed. Returns why not,
    where the installed JupyterLab does not use it so (then nothing is changed)."""
    try:
        import jupyterlab.commands as commands
    except Exception as exc:  # noqa: BLE001 - no JupyterLab: nothing to lighten
        return f"jupyterlab.commands cannot be imported ({type(exc).__name__}: {exc})"
    handler = getattr(commands.AppOptions, "_default_registry", None)
    names = getattr(getattr(getattr(handler, "func", None), "__code__", None), "co_names", ())
    if not callable(getattr(commands, "_yarn_config", None)) or "_yarn_config" not in names:
        return "jupyterlab.commands.AppOptions does not take its registry from _yarn_config"

    def _yarn_config(logger):
        logger.debug("Yarn configuration not read in a workspace (light_singleuser)")
        return {key: dict(value) for key, value in NO_YARN_CONFIG.items()}

    commands._yarn_config = _yarn_config
    return None


def main():
    why = without_yarn_config()
    if why is not None:
        print(f"{LOG} the yarn configuration is read as usual: {why}", file=sys.stderr, flush=True)
    return import_singleuser().main()


if __name__ == "__main__":
    sys.exit(main())
