# LiveChat, built with every distributed adapter. One image for every role:
#   livechat serve | livechat ingress | livechat processor <history|notifications|analytics>
FROM rust:1.85-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p livechat --features distributed \
    && cp target/release/livechat /usr/local/bin/livechat

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libcurl4 curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /data livechat && mkdir -p /data && chown livechat /data
COPY --from=build /usr/local/bin/livechat /usr/local/bin/livechat
COPY web /app/web
USER livechat
ENV LIVECHAT_DATA_DIR=/data \
    LIVECHAT_INGRESS__LISTEN=0.0.0.0:8000 \
    LIVECHAT_INGRESS__WEB_DIR=/app/web
EXPOSE 8000
ENTRYPOINT ["livechat", "--log-format", "json"]
CMD ["serve"]
