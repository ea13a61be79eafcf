# syntax=docker/dockerfile:1
# Build: docker build -t swapline .
# Run:   docker run -p 8000:8000 -e SWAPLINE_REDIS_URL=redis://redis:6379/0 swapline
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY snippet ./snippet
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 swapline
COPY --from=build /install /usr/local
WORKDIR /app
COPY rules ./rules
RUN mkdir -p /app/data && chown swapline /app/data
USER swapline
ENV SWAPLINE_HOST=0.0.0.0 \
    SWAPLINE_PORT=8000 \
    SWAPLINE_RULES_DIR=/app/rules \
    SWAPLINE_DATA_DIR=/app/data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz').status != 200)"
CMD ["swapline", "serve"]
