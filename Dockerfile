# The Airflow image for docker-compose.yaml: the official image plus the project's pinned dependencies.
FROM apache/airflow:3.3.2-python3.11 AS airflow
COPY --chown=airflow:root requirements.txt requirements-dev.txt constraints.txt /opt/patchcycle/
RUN pip install --no-cache-dir -r /opt/patchcycle/requirements.txt -c /opt/patchcycle/constraints.txt

# The sandbox AWS (moto and the test tools) for rehearsals; never in the Airflow image.
FROM airflow AS sandbox
RUN pip install --no-cache-dir -r /opt/patchcycle/requirements-dev.txt -c /opt/patchcycle/constraints.txt
