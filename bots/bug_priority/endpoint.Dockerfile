# Endpoint image of the bug_priority bot: a fastText supervised model in BlazingText's inference format,
# over the SageMaker serving contract. `docker run <image> serve` answers GET /ping and POST /invocations
# on port 8080 (SAGEMAKER_BIND_TO_PORT chooses another); the model is /opt/ml/model/model.bin, unpacked
# from the bot's model_s3_path (train it with bots/bug_priority/train.py, or use a BlazingText model.tar.gz).
#
# Build from the repository root:
#     docker build --network host -f bots/bug_priority/endpoint.Dockerfile -t spotbot/bug_priority-endpoint:local .
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

# fastText comes as a prebuilt manylinux wheel: no compiler in the image
COPY bots/bug_priority/requirements.txt /opt/program/requirements.txt
RUN python3 -m pip install --no-cache-dir -r /opt/program/requirements.txt
COPY framework /opt/spotbot/framework
COPY bots/bug_priority/endpoint.py bots/bug_priority/priority_text.py /opt/program/
USER 1000:1000
WORKDIR /opt/program
EXPOSE 8080
ENTRYPOINT ["python3", "-m", "framework.endpoints.serving", "--handler", "python:/opt/program/endpoint.py"]
CMD ["serve"]
