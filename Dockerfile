# autoenc on the Apache Beam Python SDK image. One image serves as
#  * the SDK worker image: --sdk_container_image on Dataflow, Flink or Spark
#    (the entrypoint is the base image's worker boot binary, kept as is);
#  * a Dataflow Flex Template launcher: the launcher binary is copied in and the
#    FLEX_TEMPLATE_PYTHON_* variables point it at pipelines/flex_template.py
#    (template parameters: flex_template_metadata.json).
# The launcher image tag is a build argument: pick a newer release with
# --build-arg LAUNCHER_IMAGE=... (it only provides one static binary).
ARG LAUNCHER_IMAGE=gcr.io/dataflow-templates-base/python311-template-launcher-base:flex_templates_base_image_release_20240628_RC00
FROM ${LAUNCHER_IMAGE} AS launcher

FROM apache/beam_python3.11_sdk:2.77.0

COPY --from=launcher /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher

WORKDIR /opt/autoenc
COPY pyproject.toml setup.py README.md LICENSE MANIFEST.in ./
COPY autoenc/ autoenc/
COPY pipelines/ pipelines/
RUN pip install --no-cache-dir . && pip check

ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/opt/autoenc/pipelines/flex_template.py \
    FLEX_TEMPLATE_PYTHON_SETUP_FILE=/opt/autoenc/setup.py \
    PIP_NO_DEPS=True

ENTRYPOINT ["/opt/apache/beam/boot"]
