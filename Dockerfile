# The webhook-armor simulator in a container.
#   docker build -t webhook-armor-simulator .
#   docker run -p 8080:8080 webhook-armor-simulator          # in memory
#   docker compose up                                         # Redis + PostgreSQL, api + 2 workers
# Not built or run in this project's CI: no container engine runs there.
FROM rust:1.88-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p webhook-armor-simulator \
    && cp target/release/webhook-armor-simulator /usr/local/bin/

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 simulator
COPY --from=build /usr/local/bin/webhook-armor-simulator /usr/local/bin/webhook-armor-simulator
USER simulator
ENV BIND=0.0.0.0 PORT=8080
EXPOSE 8080
ENTRYPOINT ["webhook-armor-simulator"]
