"""The sample image bot on the embedded stack: real photos, real ImageNet labels (EfficientNet-Lite0)."""

from __future__ import annotations

import io
import json

import skimage.data
from PIL import Image

from conftest import ROOT, spotbot, upload


def test_image_labeller_names_what_is_in_real_photos(settings, store, storage, bucket):
    # Given real photos (scikit-image ships them) in four formats
    photos = {}
    for name, fmt, ext in [("chelsea", "PNG", "png"), ("coffee", "JPEG", "jpg"), ("rocket", "TIFF", "tif"),
                           ("astronaut", "GIF", "gif")]:
        data = io.BytesIO()
        Image.fromarray(getattr(skimage.data, name)()).save(data, fmt)
        photos[f"in/{name}.{ext}"] = data.getvalue()
    upload(storage, bucket, photos)
    assert spotbot(settings, "bots", "register", str(ROOT / "bots" / "image_labeller" / "bot_config.json")).returncode == 0

    # When the image bot labels them
    result = spotbot(settings, "submit", "--bot", "image_labeller", "--input", f"s3://{bucket}/in/", "--output",
                     f"s3://{bucket}/out/", "--bots", "1", "--wait", "--json", timeout=600)

    # Then the top-5 labels name what is in each photo
    assert result.returncode == 0, result.stderr
    rows = {json.loads(line)["file_key"]: json.loads(line)
            for line in spotbot(settings, "results", json.loads(result.stdout)["job_id"]).stdout.splitlines()}
    assert len(rows) == 4
    cat = rows["in/chelsea.png"]["labels"]
    assert any("cat" in label for label in cat[:2]), cat
    assert rows["in/coffee.jpg"]["labels"][0] == "espresso"
    assert any("missile" in label or "space shuttle" in label for label in rows["in/rocket.tif"]["labels"][:3])
    assert all(len(row["labels"]) == 5 for row in rows.values())
