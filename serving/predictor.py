"""``MpgModel``: the KServe predictor of the project's ServingRuntime.

Ready only after a model loaded, verified and compiled. It answers V1
(``instances``) and V2 (``inputs``) with miles per gallon and litres per 100 km,
and flags inputs outside the training ranges of the model card.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from kserve import InferRequest, InferResponse, Model
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput

from core.errors import MlopsError
from core.features import FEATURE_NAMES, to_l_per_100km
from core.model_card import ModelCard, load_model
from core.store import ModelStore
from serving.fastpath import fast_predictor
from serving.schema import InvalidRequestError, parse_v1, parse_v2

logger = logging.getLogger(__name__)
#: V2 outputs and their datatypes; the metadata and every response list them from here.
OUTPUT_TYPES = {"mpg": "FP64", "l_per_100km": "FP64", "outside_training_range": "BYTES"}


class PayloadTooLarge(InvalidInput):
    """Too many instances in one request (answered 413)."""


class MpgModel(Model):
    """Fuel-consumption predictor over a verified model directory."""

    def __init__(self, name: str, model_uri: str, store: ModelStore):
        super().__init__(name)
        self.model_uri = model_uri
        self.store = store
        self.card: ModelCard | None = None
        self.path = "none"
        self.ready = False

    def load(self) -> bool:
        """Fetch through the model store, verify the hash, unpickle, compile. Not ready on any failure."""
        try:
            model, card = load_model(self.store.fetch(self.model_uri))
        except MlopsError as e:
            logger.error("model %s NOT loaded, staying not ready: %s", self.model_uri, e)
            self.ready = False
            return False
        self._low = np.array([f.min for f in card.features])
        self._high = np.array([f.max for f in card.features])
        self._ranges = [(f.min, f.max) for f in card.features]
        self._predict, self.path = fast_predictor(model, self._low, self._high)
        self.card = card
        self.ready = True
        logger.info("model %s loaded from %s (%s, %s path)", card.id[:12], self.model_uri, card.algorithm, self.path)
        return True

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
            else:
                matrix = parse_v1(payload)
        except InvalidRequestError as e:
            raise (PayloadTooLarge if e.status == 413 else InvalidInput)(str(e)) from e
        mpg = self._predict(matrix)
        l_per_100km = to_l_per_100km(mpg)
        flags = self.outside_training_range(matrix)
        if isinstance(payload, InferRequest):
            return self._v2_response(payload, mpg, l_per_100km, flags)
        return {
            "model_id": self.card.id,
            "predictions": [
                {"mpg": float(m), "l_per_100km": float(litres), "outside_training_range": f}
                for m, litres, f in zip(mpg, l_per_100km, flags, strict=True)
            ],
        }

    def _v2_response(self, request: InferRequest, mpg, l_per_100km, flags) -> InferResponse:
        data = {
            "mpg": mpg.tolist(),
            "l_per_100km": l_per_100km.tolist(),
            "outside_training_range": [",".join(f) for f in flags],
        }
        outputs = [
            InferOutput(name=name, shape=[len(mpg)], datatype=datatype, data=data[name])
            for name, datatype in OUTPUT_TYPES.items()
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
