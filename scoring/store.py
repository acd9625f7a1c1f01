"""The MLflow store: where it is, how to point MLflow at it, and how to load a model from it.

Entry points call `configure(settings)` at run time, never at import."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, closing, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from features.definitions import FEATURE_VERSION
from scoring.artifact import ChurnModel
from scoring.settings import Offer, Settings

log = logging.getLogger(__name__)


def embedded_uri(settings: Settings) -> str:
    return f"sqlite:///{settings.mlruns / 'mlflow.db'}"


def store_uri(settings: Settings) -> str:
    """The configured tracking URI, else SQLite under mlruns/ (the embedded default)."""
    return settings.tracking_uri or embedded_uri(settings)


def local_artifact_root(settings: Settings, uri: str) -> str | None:
    """Where new experiments keep artifacts: mlruns/artifacts with the embedded store, else
    wherever the server decides."""
    if uri != embedded_uri(settings):
        return None
    return (settings.mlruns / "artifacts").as_uri()


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` across processes (flock), held for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def store_lock(settings: Settings) -> AbstractContextManager[None]:
    """The embedded store's lock for MLflow steps that read and then write, such as creating an
    experiment if it is missing or moving an alias only if it still points where it did: SQLite
    serialises single statements, not such steps. A remote tracking URI is left alone: its
    server orders its own writes, and a file here would not reach its other clients. Not
    reentrant: the block must not take it again."""
    if store_uri(settings) != embedded_uri(settings):
        return nullcontext()
    return _file_lock(settings.mlruns / ".store.lock")


def configure(settings: Settings, read_only: bool = False) -> str:
    """Point MLflow (tracking and registry) at the configured store; create mlruns/ and the
    tables of the embedded default. Returns the URI. The tables have a lock of their own, so
    configure never waits behind, or deadlocks inside, a block holding `store_lock`.

    `read_only` (the service): a SQLite store is opened read only and never created, moved or
    migrated; a missing one is a RegistryUnavailable that says so in one line."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # MLflow draws a tqdm bar for every artifact it downloads, even one small file; in a
    # notebook or a server log those bars are noise (set the variable to keep them)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = store_uri(settings)
    if uri == embedded_uri(settings) and not settings.home.is_dir():
        # a mistyped CHURN_HOME would otherwise become a new, empty store
        raise ValueError(f"CHURN_HOME: {settings.home} is not a folder; create it or fix the "
                         "path (mlruns/ is made inside it)")
    if read_only and uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise RegistryUnavailable(sqlite_problem(uri))
        _open_read_only(uri, path)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if uri == embedded_uri(settings) and not read_only:
        _create_tables(settings)
    return uri


class RegistryUnavailable(ValueError):
    """The registry is missing or cannot be read; the message is one plain line."""


def _open_read_only(uri: str, path: Path) -> None:
    """Make every connection MLflow's SQLite stores open for `uri` read only (`mode=ro`): SQLite
    then never creates the file, so a registry moved away stays missing instead of turning into
    an empty one, and nothing is written or migrated. MLflow keys its engines by URI
    (`_engine_map`, which `serving.holder` also disposes) and builds a store on the engine there,
    so the engine is put in place (or, when a store already made one, changed) before use."""
    import sqlalchemy
    from mlflow.store.db.utils import create_sqlalchemy_engine
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as Registry
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as Tracking

    target = f"{path.resolve().as_uri()}?mode=ro"

    def read_only(dialect, record, cargs, cparams):  # SQLAlchemy's do_connect signature
        cparams.pop("database", None)
        cargs[:] = [target]
        cparams["uri"] = True

    engines = []
    for store in (Registry, Tracking):
        with store._engine_map_lock:
            engine = store._engine_map.get(uri) or next(iter(engines), None) \
                or create_sqlalchemy_engine(uri)  # MLflow's, with its SQL functions; not open yet
            store._engine_map[uri] = engine
        if engine not in engines:
            engines.append(engine)
    for engine in engines:
        if not getattr(engine, "churn_read_only", False):
            sqlalchemy.event.listen(engine, "do_connect", read_only)
            engine.churn_read_only = True
        engine.dispose()  # connections opened before now were not read only


def registry_problem(uri: str, exc: BaseException | None = None) -> str:
    """Why the registry at `uri` cannot be read (or why a call to it failed with `exc`), as one
    plain line: a missing SQLite file, a file without MLflow's tables (an empty one, or another
    database), or the error's own message without SQLAlchemy's SQL text and links."""
    problem = sqlite_problem(uri)
    if problem is not None:
        return problem
    if exc is None:
        return f"the registry {uri} cannot be read"
    cause = getattr(exc, "orig", None) or exc  # SQLAlchemy's error wraps the driver's
    text = cause.message if isinstance(cause, MlflowException) else str(cause)
    return " ".join(text.split("[SQL:")[0].split())[:300]


def sqlite_problem(uri: str) -> str | None:
    """Why the SQLite file of `uri` is no registry, in one line; None when it is one (or `uri`
    is not a SQLite file)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = Path(uri.removeprefix("sqlite:///"))
    if not path.is_file():
        return (f"the registry {path} is missing (moved or deleted?); put the MLflow store back "
                "or set MLFLOW_TRACKING_URI")
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            tables = {n for (n,) in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as err:
        return f"the registry {path} cannot be read: {err}"
    if "registered_models" not in tables:
        return (f"the registry {path} holds no MLflow registry (an empty file or another "
                "database); put the MLflow store back")
    return None


def follow_move_once(settings: Settings) -> list[str]:
    """`follow_move` under the tables' lock, for an embedded store that exists: what `churn
    serve` does before the read-only service starts, so a copied store serves its own
    artifacts. Never creates the store."""
    if store_uri(settings) != embedded_uri(settings) or not (settings.mlruns / "mlflow.db").is_file():
        return []
    with _file_lock(settings.mlruns / ".tables.lock"):
        return follow_move(settings)


def _create_tables(settings: Settings) -> None:
    """Create the embedded store's tables now, one process at a time. MLflow creates them on
    first use without a lock, so two first runs on an empty store both migrate it and one dies
    of a raw sqlite3 or alembic error; under the lock the second finds them made."""
    with _file_lock(settings.mlruns / ".tables.lock"):  # apart from store_lock: see configure
        client = MlflowClient()
        client.search_experiments(max_results=1)  # opens the tracking store
        client.search_registered_models(max_results=1)  # and the registry's
        follow_move(settings)


# Columns of the embedded store that hold artifact locations. MLflow resolves every location
# to an absolute path when it stores it (`resolve_uri_if_local` in
# SqlAlchemyStore.create_experiment; a run's artifact_uri and a logged model's location are
# the experiment's location plus ids) and has no call that changes one afterwards.
_LOCATION_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                     ("logged_models", "artifact_location"), ("model_versions", "storage_location"),
                     ("model_versions", "source"))


def _stored_roots(db: sqlite3.Connection) -> set[str]:
    """The mlruns/ folders this store's experiments were created in: every experiment of ours
    keeps its artifacts in <home>/mlruns/artifacts (see local_artifact_root); a location of
    another shape was chosen by someone else and is left alone."""
    roots = set()
    for (location,) in db.execute("SELECT artifact_location FROM experiments"):
        path = Path(location[len("file://"):]) if (location or "").startswith("file://") else None
        if path is not None and path.name == "artifacts" and path.parent.name == "mlruns":
            roots.add(path.parent.as_posix())
    return roots


def follow_move(settings: Settings) -> list[str]:
    """Keep an embedded store that was copied or moved writing under its new root.

    MLflow stores artifact locations as absolute paths, so a copy of mlruns/ would keep writing
    new runs and models into the folder it was copied from. When the store's locations point at
    another mlruns/ folder, they are rewritten to this one, and a warning names both; when this
    folder has no artifacts/ to point at (only mlflow.db was copied), the store is refused, as
    its runs and models would be missing. Returns the old roots that were rewritten. Call with
    the tables' lock held (see _create_tables)."""
    root = settings.mlruns.resolve()
    db = sqlite3.connect(settings.mlruns / "mlflow.db")
    try:
        moved = sorted(r for r in _stored_roots(db) if Path(r).resolve() != root)
        if moved and not (root / "artifacts").is_dir():
            raise ValueError(
                f"CHURN_HOME: {root / 'mlflow.db'} keeps its runs and models in {moved[0]}, and "
                f"{root} has no artifacts/ folder: copy the whole mlruns/ folder, not only mlflow.db")
        with db:  # one transaction: every location moves, or none
            tables = {name for (name,) in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            for old in moved:
                for table, column in _LOCATION_COLUMNS:
                    if table not in tables:
                        continue
                    for before, after in ((f"file://{old}/", f"file://{root.as_posix()}/"),
                                          (f"{old}/", f"{root.as_posix()}/")):
                        db.execute(
                            f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                            f"WHERE substr({column}, 1, ?) = ?",
                            (after, len(before) + 1, len(before), before))
    finally:
        db.close()
    for old in moved:
        log.warning("the store was moved: its artifact locations pointed at %s and now point at "
                    "%s", old, root)
    return moved


# The experiment's kind, as MLflow 3 names it (ExperimentKind in its UI bundle:
# "genai_development", "custom_model_development", ...). MLflow 3.17's UI no longer picks its
# view from this tag but from a browser-wide switch that starts on GenAI; `churn ui` prints
# addresses that open the model-training view (cli/ui.py). The tag still says what the
# experiment holds, for the UI versions and tools that read it.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def experiment_id(name: str, settings: Settings) -> str:
    """The experiment's id, created if missing and set up for model training in the UI; under
    the store lock, else two first runs both miss it and the second dies creating it again."""
    key, kind = EXPERIMENT_KIND
    with store_lock(settings):
        exp = mlflow.get_experiment_by_name(name)
        if exp is None:
            return mlflow.create_experiment(
                name, artifact_location=local_artifact_root(settings, mlflow.get_tracking_uri()),
                tags={key: kind})
        if key not in exp.tags:  # made before the tag; a kind a user chose is kept
            MlflowClient().set_experiment_tag(exp.experiment_id, key, kind)
        return exp.experiment_id


# Set on a registered version as the last step of `churn train`, once everything the version
# needs (the model, its evaluation model, the reference, the test snapshot) is logged and its
# runs have ended: "false" at registration, "true" at the end. A version without the tag was
# registered before the tag existed and counts as complete when its run FINISHED.
COMPLETE_TAG = "churn.complete"


def incomplete_reason(mv) -> str | None:
    """Why a registered version (an MLflow ModelVersion) may be neither promoted nor served, in
    one line, or None when it is complete."""
    what = f"version {mv.version} of model {mv.name!r}"
    flag = (mv.tags or {}).get(COMPLETE_TAG)
    if flag == "true":
        return None
    if flag is not None:
        return (f"{what} is incomplete: its `churn train` stopped before logging everything "
                "the version needs; train again")
    status = None
    if mv.run_id:
        try:
            status = mlflow.get_run(mv.run_id).info.status
        except MlflowException:
            status = "missing"
    if status == "FINISHED":
        return None
    return (f"{what} is incomplete: its training run is {status or 'unknown'}, not "
            "finished; train again")


def check_complete(mv) -> None:
    """ValueError naming the version when it is not complete (see `incomplete_reason`)."""
    reason = incomplete_reason(mv)
    if reason is not None:
        raise ValueError(reason)


def version_by_alias(client: MlflowClient, name: str, alias: str):
    """The model version holding `alias`, or None."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


@dataclass(frozen=True)
class ModelRef:
    """A `models:/name/version` or `models:/name@alias` URI, taken apart."""

    name: str
    version: str | None = None
    alias: str | None = None


def parse_model_uri(uri: str) -> ModelRef | None:
    """The registered model a `models:/` URI names; None for any other URI (runs:/, a path)."""
    if not uri.startswith("models:/"):
        return None
    ref = uri[len("models:/"):]
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return ModelRef(name, alias=alias)
    name, _, version = ref.partition("/")
    return ModelRef(name, version=version or None)


@dataclass
class LoadedModel:
    """A churn model with where it came from."""

    model: ChurnModel
    uri: str
    name: str | None = None
    version: str | None = None
    run_id: str | None = None
    aliases: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    horizon_days: float | None = None  # the training run's label horizon, when it is known

    @property
    def label(self) -> str:
        """The version, or the URI for a model outside the registry."""
        return self.version or self.uri


def feature_version_problem(version: str) -> str | None:
    """Why a model built with feature `version` cannot be scored by this code, or None. The
    feature code computes FEATURE_VERSION's columns; an older model expects others."""
    if version == FEATURE_VERSION:
        return None
    return (f"the model was built with feature version {version}, and this code computes "
            f"feature version {FEATURE_VERSION}; retrain it with `churn train`, or score it with "
            "the release that built it")


def load_model(uri: str) -> LoadedModel:
    """Load a churn model from MLflow (e.g. models:/churn@champion) and describe it. A model
    whose feature version differs from this code's, or a registered version that is not
    complete (`incomplete_reason`), is a ValueError that says so."""
    ref = parse_model_uri(uri)
    if ref is not None:
        client = MlflowClient()
        check_complete(client.get_model_version_by_alias(ref.name, ref.alias) if ref.alias
                       else client.get_model_version(ref.name, ref.version))
    pyfunc = mlflow.pyfunc.load_model(uri)
    model = pyfunc.unwrap_python_model().model
    problem = feature_version_problem(model.spec.version)
    if problem:
        raise ValueError(f"{uri}: {problem}")
    loaded = LoadedModel(model=model, uri=uri, run_id=pyfunc.metadata.run_id)
    if ref is not None:
        client = MlflowClient()
        mv = (client.get_model_version_by_alias(ref.name, ref.alias) if ref.alias
              else client.get_model_version(ref.name, ref.version))
        loaded.name, loaded.version = mv.name, str(mv.version)
        loaded.aliases = list(mv.aliases or [])
        loaded.run_id = mv.run_id
    if loaded.run_id:
        try:
            run = mlflow.get_run(loaded.run_id)
            loaded.metrics = {k: v for k, v in run.data.metrics.items() if k.startswith("test_")}
            horizon = run.data.params.get("horizon_days")
            loaded.horizon_days = float(horizon) if horizon else None
        except MlflowException as exc:  # metrics are informative only
            log.warning("could not read metrics of run %s: %s", loaded.run_id, exc)
    return loaded


def logged_offer(run_id: str) -> Offer | None:
    """The offer settings a training run used (its offer.json), or None for a run logged
    before runs recorded them. Targeting with a model should use these, not today's defaults."""
    if "offer.json" not in {a.path for a in MlflowClient().list_artifacts(run_id)}:
        return None
    return Offer.model_validate_json(mlflow.artifacts.load_text(f"runs:/{run_id}/offer.json"))

