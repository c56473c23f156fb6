# paramap as a BIDS App: `docker run … paramap BIDS_DIR OUTPUT_DIR participant|group [options]`.
# Not built in CI. The GPU path needs the host's Vulkan driver (e.g. `--gpus all` with the
# NVIDIA container toolkit); without one paramap computes on the CPU and says so.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/paramap

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libvulkan1 mesa-vulkan-drivers \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/paramap /usr/local/bin/paramap
ENTRYPOINT ["paramap", "bids"]
