# Stand-ins for the images this machine cannot pull (see docker/local/compose.podman.yaml):
# Mosquitto and VictoriaMetrics (it takes the InfluxDB v2 writes the gateway sends) from Debian's
# packages, on the locally made base (docker/local/base.sh).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      mosquitto mosquitto-clients victoria-metrics \
 && rm -rf /var/lib/apt/lists/*
