# cinfer with the CUDA backend: built in the CUDA devel image, run in the
# CUDA runtime image (cuBLASLt is opened at run time; the CUDA runtime is
# linked statically). CPU-only image: Dockerfile.cpu.
#
#   docker build -t cinfer:cuda .
#   docker run --gpus all -p 8000:8000 -v /models:/models cinfer:cuda \
#       serve -m /models/Qwen2.5-7B-Instruct --device cuda --host 0.0.0.0 --port 8000
ARG CUDA_VERSION=13.0.0
ARG UBUNTU=ubuntu24.04

FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU} AS build
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
      build-essential cmake ninja-build pkg-config git ca-certificates \
      libjansson-dev libpcre2-dev libopenblas-dev libutf8proc-dev libxxhash-dev libevent-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# .git is not in the context (.dockerignore): --build-arg GIT_COMMIT=$(git rev-parse --short=12 HEAD)
ARG GIT_COMMIT=unknown
# sm_90a (H100/H200) + sm_80 (A100) SASS, as CMakeLists.txt builds them.
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCINFER_BUILD_TESTS=OFF \
      -DCINFER_BUILD_LABS=OFF -DCINFER_GIT_COMMIT=${GIT_COMMIT} -DCINFER_MARCH=x86-64-v3 \
    && cmake --build build -j"$(nproc)" \
    && cmake --install build --prefix /opt/cinfer \
    && /opt/cinfer/bin/cinfer --version

FROM nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
# OpenBLAS (the CPU backend's GEMM) is linked dynamically; the other small
# libraries are static in the binary. curl: the health check.
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends libopenblas0 curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin cinfer
COPY --from=build /opt/cinfer /opt/cinfer
COPY --from=build /src/models/tinyqwen2-code /opt/cinfer/share/models/tinyqwen2-code
COPY --from=build /src/LICENSE /opt/cinfer/share/doc/cinfer/LICENSE
ENV PATH=/opt/cinfer/bin:$PATH
USER cinfer
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s CMD curl -fsS http://127.0.0.1:8000/health || exit 1
ENTRYPOINT ["cinfer"]
CMD ["serve", "-m", "/opt/cinfer/share/models/tinyqwen2-code", "--device", "cuda", "--host", "0.0.0.0", "--port", "8000"]
