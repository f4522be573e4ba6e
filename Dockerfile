# pushwire with the Redis broker. Build: docker build -t pushwire .
# Run (a public address needs authentication: the secrets come from the environment):
#   docker run -p 8000:8000 -e PUSHWIRE_JWT_SECRET=... -e PUSHWIRE_API_KEY=... pushwire
# Several nodes on one Redis: compose.yaml (docs/scaling.md).
FROM python:3.12-slim

WORKDIR /srv/pushwire
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir '.[redis]' && useradd --system --no-create-home pushwire

USER pushwire
EXPOSE 8000
CMD ["pushwire", "serve", "--host", "0.0.0.0", "--port", "8000"]
