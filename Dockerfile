# polyfn from its wheel, on Debian 13 (trixie) slim: Python 3.13 and Node.js 20 from Debian's own packages.
#
#   podman build -t polyfn .          (or docker build; BASE names another Debian-trixie image)
#   podman run --privileged -p 8080:8080 -p 9000:9000 -v polyfn-data:/var/lib/polyfn polyfn
#
# The sandbox needs root with CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID and CAP_NET_ADMIN, a writable cgroup and no
# container seccomp/AppArmor profile that forbids unshare and mount: --privileged gives all of that. Without them
# the entry point says what is missing and polyfn runs with the layers it can make (docs/operations.md, "Deploying").
ARG BASE=docker.io/library/debian:trixie-slim

# --- build: the wheel, from this checkout, installed with the cluster and broker extras into /opt/polyfn ----------
FROM ${BASE} AS build
# Optional, behind a TLS-intercepting proxy: its CA bundle, mounted into the build (podman/buildah --volume)
ARG PIP_CERT
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY src ./src
COPY examples ./examples
COPY clients/js/src ./clients/js/src
RUN python3 -m venv /opt/build \
 && /opt/build/bin/pip install --no-cache-dir -q build \
 && /opt/build/bin/python -m build --wheel --outdir /dist . \
 && python3 -m venv /opt/polyfn \
 && /opt/polyfn/bin/pip install --no-cache-dir -q "$(ls /dist/polyfn-*.whl)[cluster,brokers]"

# --- runtime: the interpreter and Node.js the venv and the Node runtime use, and the sandbox's tools ---------------
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 nodejs ca-certificates nftables iproute2 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/polyfn /opt/polyfn
COPY deploy/docker/entrypoint.sh /usr/local/bin/polyfn-entrypoint
ENV PATH=/opt/polyfn/bin:$PATH \
    POLYFN_DATA_DIR=/var/lib/polyfn \
    POLYFN_HOST=0.0.0.0
VOLUME /var/lib/polyfn
EXPOSE 8080 9000
STOPSIGNAL SIGTERM
ENTRYPOINT ["polyfn-entrypoint"]
CMD ["serve"]
