# Two stages: wheels are built with pip in the first; the final image has no build tools.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY prompts ./prompts
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
# MPLCONFIGDIR: matplotlib (charts) keeps its font cache there; the user's home is read-only.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    STORE_URL=sqlite:////data/enricher.db MPLCONFIGDIR=/tmp/matplotlib
RUN useradd --system --uid 10001 --home-dir /app enricher \
    && mkdir -p /data && chown enricher /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /app
USER enricher
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/health').status != 200)"
# Inside a container every client (Alertmanager too) comes from outside loopback, so set the
# webhook secret: docker run -e WEBHOOK_TOKEN="$(openssl rand -hex 32)" ... (the same token goes
# into Alertmanager's http_config). Without it, POST /alerts answers 401 to everyone.
ENTRYPOINT ["alert-enricher"]
CMD ["serve"]
