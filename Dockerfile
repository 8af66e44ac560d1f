FROM python:3.11-slim

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY notifier.py settings.py settings.yaml ./
COPY handlers/ handlers/
COPY services/ services/
COPY storage/ storage/

# Listen on every interface inside the container; publish the port with -p.
ENV NOTIFIER_SERVER_HOST=0.0.0.0
EXPOSE 8080
USER nobody
CMD ["python", "notifier.py"]
