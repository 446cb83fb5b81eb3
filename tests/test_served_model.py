"""The one reading of the predictor's model metadata that the consumer and the gateway share, and
the one error both raise for a predictor they cannot use now."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fraudops import protocol
from fraudops.features import build_spec
from fraudops.served_model import read_served_model
from fraudops.testing import free_port


def metadata(spec, *, seq_len: int = 16, fingerprint: str | None = None,
             version: str | None = None, names: object = None) -> dict:
    """A metadata document as the predictor (serving.predictor) writes it."""
    return {"name": protocol.MODEL_NAME, "versions": ["seq:3+ae:2"],
            "inputs": [{"name": "sequences", "datatype": "FP32", "shape": [-1, seq_len, spec.dim]},
                       {"name": "mask", "datatype": "BOOL", "shape": [-1, seq_len]}],
            "parameters": {protocol.PARAM_SPEC_VERSION: version or spec.version,
                           protocol.PARAM_SPEC_FINGERPRINT: fingerprint or spec.fingerprint,
                           protocol.PARAM_SEQUENCE_VERSION: "3",
                           protocol.PARAM_AUTOENCODER_VERSION: "2",
                           protocol.PARAM_FEATURE_NAMES: (",".join(spec.names)
                                                          if names is None else names)}}


passthrough = st.lists(st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,8}", fullmatch=True),
                       max_size=6, unique=True)


@given(passthrough)
def test_the_served_spec_is_the_one_the_model_was_built_with(extras: list[str]) -> None:
    built = build_spec(extras)
    served = read_served_model(metadata(built, seq_len=8))
    assert served.spec == built
    assert served.info.seq_len == 8 and served.info.feature_names == built.names


def test_feature_names_as_a_list_read_the_same() -> None:
    built = build_spec(("V1", "V2"))
    served = read_served_model(metadata(built, names=list(built.names)))
    assert served.spec == built


def test_versions() -> None:
    served = read_served_model(metadata(build_spec()))
    assert served.info.model_versions == "3/2"
    assert served.label == "seq:3+ae:2"


@pytest.mark.parametrize("change", [
    {"fingerprint": "0000"},
    {"version": "0.0.1"},
    {"names": ""},  # a passthrough model whose names are lost: fewer features than it takes
])
def test_a_model_built_for_other_features_is_refused(change: dict) -> None:
    with pytest.raises(protocol.ProtocolError, match="incompatible"):
        read_served_model(metadata(build_spec(("V1",)), **change))


def test_a_document_without_inputs_is_refused() -> None:
    with pytest.raises(protocol.ProtocolError, match="no 3-d"):
        read_served_model({"inputs": []})


def test_both_clients_raise_the_shared_unavailable_error() -> None:
    """The consumer's and the gateway's predictor clients, on a port nothing listens on, raise
    the one `fraudops.protocol.PredictorUnavailableError` (the consumer retries it, the gateway
    answers 503): not an error class of their own."""
    from consumers.predictor import PredictorClient as ConsumerClient
    from serving.gateway.predictor_client import PredictorClient as GatewayClient

    url = f"http://127.0.0.1:{free_port()}"
    consumer = ConsumerClient(url, timeout_s=0.5)
    with pytest.raises(protocol.PredictorUnavailableError):
        consumer.metadata()
    consumer.close()

    async def gateway_features() -> None:
        client = GatewayClient(url, protocol.MODEL_NAME, timeout_s=0.5)
        try:
            await client.features()
        finally:
            await client.aclose()

    with pytest.raises(protocol.PredictorUnavailableError):
        asyncio.run(gateway_features())
