# Your bot's endpoint image: your model behind SageMaker's serving contract. `docker run <image> serve`
# answers GET /ping and POST /invocations on port 8080 (SAGEMAKER_BIND_TO_PORT chooses another) and
# reads model artifacts (model_s3_path, unpacked) from /opt/ml/model; SageMaker runs it the same way.
#
# Build it with build_and_push.sh:
#     byob/bot_docker/build_and_push.sh foo-bot-endpoint --dockerfile byob/bot_docker/endpoint.Dockerfile --local
# Replace echo_endpoint.py with your handler module (model_fn, input_fn, predict_fn, output_fn) and put
# what it imports in requirements.txt beside this file.
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

COPY byob/bot_docker/requirements.txt /opt/program/requirements.txt
RUN python3 -m pip install --no-cache-dir -r /opt/program/requirements.txt
COPY framework /opt/spotbot/framework
COPY byob/bot_docker/echo_endpoint.py /opt/program/endpoint.py
USER 1000:1000
WORKDIR /opt/program
EXPOSE 8080
ENTRYPOINT ["python3", "-m", "framework.endpoints.serving", "--handler", "python:/opt/program/endpoint.py"]
CMD ["serve"]
