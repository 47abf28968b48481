# smtpy reference server: SMTP (25, 587), HTTP API (8080), data in /var/lib/smtpy.
#
#   docker build -t smtpy .
#   docker run -d --name smtpy -e SMTPY_HOSTNAME=mx.example.org \
#     -p 25:25 -p 587:587 -p 127.0.0.1:8080:8080 -v smtpy-data:/var/lib/smtpy smtpy
#   docker exec smtpy smtpy admin user create --email you@example.org --admin
#
# See docs/deployment.md. Configuration: mount a TOML file and pass
# `--config /etc/smtpy/smtpy.toml`, or set SMTPY_<SECTION>__<KEY> variables.

# --- build -------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --example server \
 && install -D -m 0755 target/release/examples/server /out/smtpy

# --- run ---------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system smtpy \
 && useradd --system --gid smtpy --home-dir /var/lib/smtpy --no-create-home \
      --shell /usr/sbin/nologin smtpy \
 && install -d -o smtpy -g smtpy -m 0700 /var/lib/smtpy
COPY --from=build /out/smtpy /usr/local/bin/smtpy

# Where the server listens and keeps its files. Docker (20.10 and later)
# lets an unprivileged process bind ports below 1024 inside the container
# (net.ipv4.ip_unprivileged_port_start=0); with --network host it does not:
# listen on high ports then (e.g. SMTPY_SMTP__LISTEN='["0.0.0.0:2525"]').
ENV SMTPY_DATA_DIR=/var/lib/smtpy \
    SMTPY_SMTP__LISTEN='["0.0.0.0:25", "0.0.0.0:587"]' \
    SMTPY_HTTP__LISTEN=0.0.0.0:8080
VOLUME ["/var/lib/smtpy"]
EXPOSE 25 587 8080
USER smtpy

# GET /healthz on the API port without curl: bash's /dev/tcp speaks HTTP/1.0.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${SMTPY_HTTP__LISTEN##*:} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]

ENTRYPOINT ["/usr/local/bin/smtpy"]
CMD ["serve"]
