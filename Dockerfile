# One image for every part of the mesh; docker-compose.yml picks the command per container.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LISTEN_HOST=0.0.0.0

WORKDIR /app
COPY requirements.txt pyproject.toml ./
RUN pip install --no-cache-dir -r requirements.txt

COPY protos ./protos
COPY gen ./gen
COPY meshkit ./meshkit
COPY social ./social
COPY users_svc ./users_svc
COPY tweets_svc ./tweets_svc
COPY fanout_svc ./fanout_svc
COPY timeline_svc ./timeline_svc
COPY notifications_svc ./notifications_svc
COPY media_svc ./media_svc
COPY devstack ./devstack
COPY tweetmesh_cli ./tweetmesh_cli
COPY mail ./mail
COPY envoy ./envoy
COPY web ./web
RUN pip install --no-cache-dir --no-deps . \
    && useradd --system --uid 10001 tweetmesh \
    && mkdir -p /var/lib/tweetmesh/media && chown tweetmesh /var/lib/tweetmesh/media
USER tweetmesh

# Services: python -m users_svc | tweets_svc | fanout_svc | timeline_svc | media_svc (see
# docker-compose.yml).
CMD ["python", "-m", "users_svc"]
