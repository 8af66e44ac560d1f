FROM python:3.11-slim

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY notifier.py settings.py settings.yaml workers.py ./
COPY handlers/ handlers/
COPY services/ services/
COPY storage/ storage/

# The embedded Redis, used when NOTIFIER_REDIS_URL is not set, keeps its data here.
RUN mkdir /app/data && chown nobody /app/data
VOLUME /app/data

# Listen on every interface inside the container; publish the port with -p.
ENV NOTIFIER_SERVER_HOST=0.0.0.0
EXPOSE 8080
USER nobody
CMD ["python", "notifier.py"]
