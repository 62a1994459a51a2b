# One image for the streaming job, the replay producer and the dashboard (docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY models/ models/
COPY flows/ flows/
COPY connectors/ connectors/
COPY dashboard/ dashboard/
COPY benchmarks/ benchmarks/
RUN pip install .

# Bytewax's dataflow API and Prometheus metrics (BYTEWAX_DATAFLOW_API_ENABLED=true), and Streamlit.
EXPOSE 3030 8501
CMD ["python", "-m", "bytewax.run", "flows.main"]
