"""``MpgModel``: the KServe predictor of the project's ServingRuntime.

Ready only after a model loaded, verified and compiled. It answers V1
(``instances``) and V2 (``inputs``) with miles per gallon and litres per 100 km,
and flags inputs outside the training ranges of the model card.

Loading never raises and never hangs: whatever is wrong with the model (a URI that
names nothing, a file that does not match the id in its URI, a pickle that is not
a trained model, a symlink or a FIFO in place of a file) is logged in one line and
kept in ``load_error``; the server stays up and not ready.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from kserve import InferRequest, InferResponse, Model
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput

from core.errors import MlopsError, ModelDirError
from core.features import FEATURE_NAMES, to_l_per_100km
from core.model_card import ModelCard, load_model
from core.uri import parse_store_uri
from infra.store import ModelStore
from serving.fastpath import fast_predictor
from serving.schema import InvalidRequestError, V2Request, parse_v1, parse_v2

logger = logging.getLogger(__name__)
#: V2 outputs and their datatypes; the metadata and every response list them from here.
OUTPUT_TYPES = {"mpg": "FP64", "l_per_100km": "FP64", "outside_training_range": "BYTES"}


class PayloadTooLarge(InvalidInput):
    """Too many instances in one request (answered 413)."""


class MpgModel(Model):
    """Fuel-consumption predictor over a verified model directory."""

    def __init__(self, name: str, model_uri: str, store: ModelStore, source_uri: str | None = None):
        """``source_uri``: the store URI a local ``model_uri`` was downloaded from (in the cluster,
        the InferenceService's storageUri); the model file must hash to the id in it."""
        super().__init__(name)
        self.model_uri = model_uri
        self.source_uri = source_uri
        self.store = store
        self.card: ModelCard | None = None
        self.load_error: str | None = None
        self.predictor_kind = "none"  # "compiled" (the fast path) or "model.predict", once loaded
        self.ready = False

    def load(self) -> bool:
        """Fetch through the model store, verify the hash, unpickle, compile. Not ready on any failure."""
        try:
            self._load()
        except Exception as e:  # noqa: BLE001 - any failure must leave the server up and not ready
            self.load_error = str(e) if isinstance(e, MlopsError) else f"{type(e).__name__}: {e}"
            logger.error("model %s NOT loaded, staying not ready: %s", self.model_uri, self.load_error)
            self.ready = False
            return False
        self.load_error = None
        self.ready = True
        card = self.card
        logger.info(
            "model %s loaded from %s (%s, %s path)", card.id[:12], self.model_uri, card.algorithm, self.predictor_kind
        )
        return True

    def _load(self) -> None:
        path, expected_id = self.store.resolve(self.model_uri)
        if self.source_uri is not None:
            source_id = parse_store_uri(self.source_uri).model_id
            if expected_id not in (None, source_id):
                raise ModelDirError(f"{self.model_uri} and source {self.source_uri} name different models")
            expected_id = source_id
        model, card = load_model(path, expected_id)
        self._low = np.array([f.min for f in card.features])
        self._high = np.array([f.max for f in card.features])
        self._ranges = [(f.min, f.max) for f in card.features]
        self._predict, self.predictor_kind = fast_predictor(model, self._low, self._high)
        self.card = card

    def validate(self, payload):
        return payload  # ``predict`` parses and validates (kserve's check assumes a decoded dict)

    def outside_training_range(self, matrix: np.ndarray) -> list[list[str]]:
        """Per row, the features outside the ranges the model was trained on."""
        if len(matrix) == 1:  # plain Python beats numpy on one row
            bounds = zip(FEATURE_NAMES, matrix[0].tolist(), self._ranges, strict=True)
            return [[name for name, value, (low, high) in bounds if not low <= value <= high]]
        outside = (matrix < self._low) | (matrix > self._high)
        if not outside.any():
            return [[] for _ in range(len(matrix))]
        return [[FEATURE_NAMES[j] for j in np.flatnonzero(row)] for row in outside]

    def predict(self, payload: dict | InferRequest, headers: dict[str, str] | None = None) -> dict | InferResponse:
        # Synchronous on purpose: the compiled path takes tens of microseconds, less than
        # handing the work to a thread would cost; it never waits on I/O.
        try:
            if isinstance(payload, InferRequest):
                matrix = parse_v2([(i.name, list(i.shape), i.datatype, i.data) for i in payload.inputs])
                outputs = self._requested_outputs(payload)
            else:
                matrix = parse_v1(payload)
        except InvalidRequestError as e:
            raise (PayloadTooLarge if e.status == 413 else InvalidInput)(str(e)) from e
        mpg = self._predict(matrix)
        l_per_100km = to_l_per_100km(mpg)
        flags = self.outside_training_range(matrix)
        if isinstance(payload, InferRequest):
            return self._v2_response(payload, outputs, mpg, l_per_100km, flags)
        return {
            "model_id": self.card.id,
            "predictions": [
                {"mpg": float(m), "l_per_100km": float(litres), "outside_training_range": f}
                for m, litres, f in zip(mpg, l_per_100km, flags, strict=True)
            ],
        }

    def infer_json(self, request: V2Request) -> dict:
        """A checked V2 request to the V2 REST answer, directly: what ``predict`` on kserve's InferRequest gives
        after ``InferResponse.to_rest()``, without building either object (a third of a V2 request's cost)."""
        try:
            matrix = parse_v2([(i.name, i.shape, i.datatype, i.data) for i in request.inputs])
            outputs = _checked_outputs(request.outputs or list(OUTPUT_TYPES))
        except InvalidRequestError as e:
            raise (PayloadTooLarge if e.status == 413 else InvalidInput)(str(e)) from e
        mpg = self._predict(matrix)
        data = self._v2_data(mpg, to_l_per_100km(mpg), self.outside_training_range(matrix))
        return {
            "id": request.id,
            "model_name": self.name,
            "model_version": None,
            "outputs": [
                {"name": name, "shape": [len(mpg)], "datatype": OUTPUT_TYPES[name], "data": data[name]}
                for name in outputs
            ],
            "parameters": {"model_id": self.card.id},
        }

    @staticmethod
    def _v2_data(mpg, l_per_100km, flags) -> dict[str, list]:
        return {
            "mpg": mpg.tolist(),
            "l_per_100km": l_per_100km.tolist(),
            "outside_training_range": [",".join(f) for f in flags],
        }

    @staticmethod
    def _requested_outputs(request: InferRequest) -> list[str]:
        return _checked_outputs([o.name for o in request.request_outputs or []] or list(OUTPUT_TYPES))

    def _v2_response(self, request: InferRequest, outputs: list[str], mpg, l_per_100km, flags) -> InferResponse:
        data = self._v2_data(mpg, l_per_100km, flags)
        outputs = [
            InferOutput(name=name, shape=[len(mpg)], datatype=OUTPUT_TYPES[name], data=data[name]) for name in outputs
        ]
        return InferResponse(
            response_id=request.id or "",
            model_name=self.name,
            infer_outputs=outputs,
            parameters={"model_id": self.card.id},
        )

    def get_input_types(self) -> list[dict[str, Any]]:
        return [{"name": name, "datatype": "FP64", "shape": [-1]} for name in FEATURE_NAMES]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [{"name": name, "datatype": datatype, "shape": [-1]} for name, datatype in OUTPUT_TYPES.items()]


def _checked_outputs(requested: list[str]) -> list[str]:
    unknown = [name for name in requested if name not in OUTPUT_TYPES]
    if unknown:
        raise InvalidRequestError(f"outputs.{unknown[0]}: unknown output; expected {', '.join(OUTPUT_TYPES)}")
    return requested
