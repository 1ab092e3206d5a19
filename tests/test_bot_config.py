"""The seed's bot_config.json format: the shipped examples and the seed's own example parse."""

from __future__ import annotations

from pathlib import Path

from framework.bot_config import read_bot_config
from framework.models import BotConfig

from conftest import ROOT

SEED_EXAMPLE = {
    "es_url": "vpc-spot-bot-xqra2d6vha4waz4oer2yqx2vfu.cn-northwest-1.es.amazonaws.com.cn",
    "name": "foo_bot",
    "file_types": ".jpg,.png",
    "bot_image": "foo-bot-img.ecr.amazon.com",
    "bot_image_cmd": "",
    "endpoint_name": "foo-autogluon-sagemaker-inference",
    "endpoint_ecr_image_path": "foo-endpoint.ecr.amazon.com",
    "instance_type": "ml.m5.large",
    "model_s3_path": "",
    "create_date": "2020-07-27 21:39:00",
    "update_date": "2020-07-27 22:39:00",
}


def test_the_seeds_example_parses_unchanged():
    config = BotConfig.parse(SEED_EXAMPLE)
    assert config.file_types == [".jpg", ".png"]
    assert [(e.name, e.image) for e in config.endpoints()] == [("foo-autogluon-sagemaker-inference", "foo-endpoint.ecr.amazon.com")]
    assert config.create_date == "2020-07-27 21:39:00"


def test_two_endpoints_pair_up_in_order():
    config = BotConfig.parse({**SEED_EXAMPLE, "endpoint_name": "det,rec", "endpoint_ecr_image_path": "img-det,img-rec",
                              "model_s3_path": "s3://m/det.tar.gz,"})
    assert [(e.name, e.image, e.model_s3_path) for e in config.endpoints()] == [
        ("det", "img-det", "s3://m/det.tar.gz"), ("rec", "img-rec", "")]


def test_the_shipped_examples_parse_and_point_at_real_files():
    root = read_bot_config(ROOT / "bot_config.json")
    shipped = read_bot_config(ROOT / "bots" / "doc_ocr" / "bot_config.json")
    assert (root.name, root.bot_image, root.endpoint_ecr_image_path) == (
        shipped.name, shipped.bot_image, shipped.endpoint_ecr_image_path)
    assert Path(root.bot_image.removeprefix("python:")).is_file()
    byob = read_bot_config(ROOT / "byob" / "bot_config.json")
    assert byob.name == "foo_bot" and Path(byob.bot_image.removeprefix("python:")).is_file()
