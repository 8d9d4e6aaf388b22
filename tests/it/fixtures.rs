//! Golden fixtures from Python Celery 5.7 (filled in below).
