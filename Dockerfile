# The gateway as the platform deploys it: one container named api-gateway on port 3000.

# Build stage: the request path compiled with mypyc (needs a C compiler and the dev tools,
# which stay out of the final image). tools/compile.py records the sources it was built from;
# the gateway uses the build only if the installed sources match them.
FROM python:3.11 AS compiled
WORKDIR /build
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
COPY tools ./tools
RUN pip install --no-cache-dir -c constraints.txt -e '.[dev]' && python tools/compile.py

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PORT=3000
WORKDIR /app

# Dependencies first, pinned exactly as the tests run them, so code changes reuse this layer.
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
RUN pip install --no-cache-dir -c constraints.txt . \
    && useradd --system --uid 10001 --no-create-home gateway
COPY --from=compiled /build/src/api_gateway/_compiled \
    /usr/local/lib/python3.11/site-packages/api_gateway/_compiled

USER gateway
EXPOSE 3000

# /live answers while the event loop runs; the slim image has no curl, Python does the probe.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '3000')}/live\", timeout=2)"]

# Secrets come from files mounted by the orchestrator (JWT_SECRET_FILE), never from the image.
CMD ["api-gateway", "serve"]
