# spotbot-base:local: the base image for spotbot bot workers and model endpoints.
#
# Built by deploy/docker/build-base-image.sh, never pulled: its parent spotbot-rootfs:local
# is a Debian bookworm (minbase + python3, python3-venv, python3-pip, ca-certificates)
# root filesystem made with debootstrap and loaded with `docker import`.
#
# Uses only features of the classic builder (no BuildKit syntax), so it builds with
# Debian's docker.io 20.10 with or without BuildKit. Build with `--network host` when
# a step needs the network (the engine here runs without a bridge network).
#
# Downstream images: install things as root, then drop back to the unprivileged user:
#     FROM spotbot-base:local
#     USER root
#     RUN pip install --no-cache-dir -r /tmp/requirements.txt     # goes into /opt/venv
#     USER spotbot
ARG BASE_IMAGE=spotbot-rootfs:local
FROM ${BASE_IMAGE}

# Extra CA certificates of the build host (e.g. a TLS-inspecting egress proxy in CI),
# copied into the build context by build-base-image.sh; the folder may be empty.
COPY certs/ /usr/local/share/ca-certificates/spotbot-extra/
RUN update-ca-certificates >/dev/null \
 && groupadd --gid 1000 spotbot \
 && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/spotbot --shell /bin/bash spotbot \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/python -c "import ssl, venv, ensurepip; print('venv ok:', ssl.OPENSSL_VERSION)"

# The venv stays root-owned: the runtime user can use it but not change it.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt

LABEL org.opencontainers.image.title="spotbot-base" \
      org.opencontainers.image.description="Debian bookworm + Python venv at /opt/venv, user spotbot (uid 1000)"

USER 1000:1000
WORKDIR /home/spotbot
CMD ["python3"]
