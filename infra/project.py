"""What a command works on, built once per invocation: the project root, the settings, the model store, and the
one way a model reference (an environment name, a model URI, a model directory) becomes a model.

The CLI keeps one ``Project`` as click's context object (``infra.cli.pass_project``); the pipeline's steps,
which run without click, make their own.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from core.model_card import ModelCard, verify_model_dir
from core.uri import LocalModelDir, ModelRef, parse_model_uri
from infra.overlays import ENVIRONMENTS, read_model_uri
from infra.settings import Settings, find_project_root
from infra.store import ModelStore, open_store


class Project:
    def __init__(self, settings: Settings | None = None):
        if settings is not None:
            self.settings = settings

    @cached_property
    def settings(self) -> Settings:
        return Settings()

    @cached_property
    def root(self) -> Path:
        return find_project_root() if self.settings.project_root is None else self.settings.project_root.resolve()

    @cached_property
    def store(self) -> ModelStore:
        return open_store(self.settings)

    def model_ref(self, ref: str | ModelRef) -> ModelRef:
        """An environment name means the model its overlay names (``k8s/overlays/<env>/model.yaml``); a URI or
        a directory means itself."""
        if isinstance(ref, str):
            return read_model_uri(self.root, ref) if ref in ENVIRONMENTS else parse_model_uri(ref)
        return ref

    def resolve(self, ref: str | ModelRef) -> tuple[Path, str | None]:
        """A verified local model directory for ``ref``, and the model id its URI demands (None for a path)."""
        return self.store.resolve(self.model_ref(ref))

    def card(self, ref: str | ModelRef) -> ModelCard:
        """The card of ``ref``, checked against its id, without fetching the model from the store."""
        model = self.model_ref(ref)
        return verify_model_dir(model.path) if isinstance(model, LocalModelDir) else self.store.card(model)
