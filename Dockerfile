# The operator's image: `phaseshift run`. Build from the repository root:
#   docker build -t ghcr.io/phaseshift/operator:0.1.0 .
# (the sample app's image is sample_app/Dockerfile). Without a registry,
# `phaseshift images build operator` builds it FROM the local Python image
# (--build-arg PYTHON_IMAGE=localhost/phaseshift/python:3.11).
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A wheel of the project, then every dependency into a virtualenv that the final stage
# copies whole: no compiler, pip cache or sources left in the runtime image.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY sample_app/ sample_app/
RUN python -m venv /opt/phaseshift \
    && /opt/phaseshift/bin/pip install .

FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/phaseshift/bin:$PATH

COPY --from=build /opt/phaseshift /opt/phaseshift

# A fixed non-root UID, so the Deployment's runAsNonRoot/runAsUser check passes.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin phaseshift
USER 10001

# 8080: /metrics; 8081: /healthz (kopf's liveness endpoint).
EXPOSE 8080 8081
ENTRYPOINT ["phaseshift"]
CMD ["run"]
