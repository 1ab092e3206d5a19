# Endpoint image of the doc_ocr bot: PP-OCRv4 (rapidocr, ONNX, CPU) over the SageMaker serving
# contract. `docker run <image> serve` answers GET /ping and POST /invocations on port 8080
# (SAGEMAKER_BIND_TO_PORT chooses another), model artifacts read from /opt/ml/model.
#
# Build from the repository root (`make images` does, on the local base spotbot-base:local):
#     docker build --network host -f bots/doc_ocr/endpoint.Dockerfile -t spotbot/doc_ocr-endpoint:local .
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# --- shared by every spotbot image: keep these lines identical, so the layers are built once ---
USER root
COPY setup.cfg /opt/spotbot/setup.cfg
RUN python3 -c "import configparser; c = configparser.ConfigParser(); c.read('/opt/spotbot/setup.cfg'); print(c['options']['install_requires'])" >/opt/spotbot/requirements.txt \
 && python3 -m pip install --no-cache-dir -r /opt/spotbot/requirements.txt \
 && (id -u 1000 >/dev/null 2>&1 || useradd --uid 1000 --create-home --shell /bin/sh spotbot)
ENV PYTHONPATH=/opt/spotbot PYTHONUNBUFFERED=1
# --- end of the shared part ---

# rapidocr asks for opencv-python, which needs libGL; the headless build is the same library without it
RUN python3 -m pip install --no-cache-dir --no-deps rapidocr-onnxruntime==1.4.4 \
 && python3 -m pip install --no-cache-dir onnxruntime opencv-python-headless numpy Pillow pyclipper PyYAML Shapely six tqdm \
 && python3 -c "import rapidocr_onnxruntime, cv2; print('rapidocr ok, opencv', cv2.__version__)"
COPY framework /opt/spotbot/framework
COPY bots/doc_ocr/endpoint.py /opt/program/endpoint.py
USER 1000:1000
WORKDIR /opt/program
EXPOSE 8080
ENTRYPOINT ["python3", "-m", "framework.endpoints.serving", "--handler", "python:/opt/program/endpoint.py"]
CMD ["serve"]
