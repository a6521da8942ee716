# autoenc on the Apache Beam Python SDK image: usable as --sdk_container_image
# for Dataflow, Flink or Spark workers; the base image's entrypoint (the SDK
# worker boot binary) is kept.
FROM apache/beam_python3.11_sdk:2.77.0

WORKDIR /opt/autoenc
COPY setup.py README.md ./
COPY autoenc/ autoenc/
COPY pipelines/ pipelines/
RUN pip install --no-cache-dir .
