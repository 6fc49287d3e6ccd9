"""The model URI grammar: one parser, two accepted forms, everything else refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.uri import LocalModelDir, ModelURIError, StoreURI, parse_model_uri, parse_repository, parse_store_uri

ID = "790aaa2b942171af1151da4cf0722f0848e2a5bff1b20bd29e89f075ab82ecf5"


def test_a_store_uri_parses_into_bucket_prefix_and_id_and_prints_back_unchanged():
    uri = parse_model_uri(f"s3://mpg-mlops/models/mpg/{ID}/")
    assert uri == StoreURI("mpg-mlops", "models/mpg", ID)
    assert str(uri) == f"s3://mpg-mlops/models/mpg/{ID}/" and uri.key == f"models/mpg/{ID}"


def test_a_plain_path_is_a_local_model_directory():
    assert parse_model_uri("models/candidate") == LocalModelDir(Path("models/candidate"))
    assert parse_model_uri("/mnt/models") == LocalModelDir(Path("/mnt/models"))


@pytest.mark.parametrize(
    "text",
    [
        "s3://mpg-mlops/models/..",
        "s3://mpg-mlops/models/../",
        "s3://mpg-mlops/",
        "s3://mpg-mlops",
        f"s3://mpg-mlops/{ID}/",  # no prefix
        f"s3://mpg-mlops/models/mpg/{ID}",  # no trailing slash
        f"s3://mpg-mlops/models/mpg/{ID}/model.joblib",
        f"s3://mpg-mlops/models/mpg/{ID.upper()}/",
        f"s3://mpg-mlops/models/mpg/{ID[:-1]}/",
        f"s3://mpg-mlops/models/../mpg/{ID}/",
        f"s3://mpg-mlops/models/./{ID}/",
        f"s3://mpg-mlops/models//{ID}/",
        f"s3://mpg-mlops/models/.scratch/{ID}/",
        f"s3://../models/{ID}/",
        f"s3://Bucket/models/{ID}/",
        f"s3://mpg-mlops/models/mpg/{ID}/?versionId=1",
        f"http://mpg-mlops/models/mpg/{ID}/",
        f"gs://mpg-mlops/models/mpg/{ID}/",
        "file:///tmp/model",
        "file:models/candidate",
        "",
        "   ",
    ],
)
def test_anything_else_is_refused_naming_the_accepted_forms(text):
    with pytest.raises(ModelURIError, match="s3://<bucket>/<prefix>/<64-hex model id>/"):
        parse_model_uri(text)


def test_a_store_uri_is_required_where_a_path_makes_no_sense():
    with pytest.raises(ModelURIError, match="not a store URI"):
        parse_store_uri("/mnt/models")


def test_repositories_take_a_prefix_and_never_an_id():
    repository = parse_repository("s3://mpg-mlops/models/mpg/")
    assert str(repository) == "s3://mpg-mlops/models/mpg"
    assert str(repository.model(ID)) == f"s3://mpg-mlops/models/mpg/{ID}/"
    for bad in ("s3://mpg-mlops", "s3://mpg-mlops/models/..", "models/mpg", f"s3://b-1/models/{ID}"):
        with pytest.raises(ModelURIError, match="not a model repository"):
            parse_repository(bad)
    with pytest.raises(ModelURIError, match="not a model id"):
        repository.model("../../etc")
