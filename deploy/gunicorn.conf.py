"""gunicorn's settings for OpenTrace, in the image (Dockerfile) and under `make run`.

gthread workers: a connection waits in the worker's event loop until it is readable and
each request gets a thread, so a client that sends its body slowly holds one thread, not a
whole worker (three slow bodies took down /healthz with sync workers). Nothing here imports
the project: the master must not hold the old release's modules when it forks the workers
of the next one (scripts/run_local.py reloads the code that way, see `post_worker_init`).
Environment: WEB_CONCURRENCY (workers), GUNICORN_THREADS (threads per worker),
OPENTRACE_WEB_READY_DIR (where each worker leaves a mark once it has loaded the app).
"""

from __future__ import annotations

import os

worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# A request that takes longer is killed; a stopping worker (SIGTERM: deploy's drain, a
# reload) finishes what it is serving within graceful_timeout (the compose file's
# stop_grace_period is longer).
timeout = 60
graceful_timeout = 30
keepalive = 5
# The heartbeat files in memory: /tmp may be a slow disk (gunicorn's own advice).
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
errorlog = "-"
# gunicorn's runtime control socket is one path per user (~/.gunicorn/gunicorn.ctl), shared
# by every gunicorn of that user, and its server thread in the master stalled forking a new
# worker for 45 s under load; nothing here uses it.
control_socket_disable = True


def post_worker_init(worker: object) -> None:
    """The app is loaded (opentrace/wsgi.py warms it up): this worker can take requests."""
    ready_dir = os.environ.get("OPENTRACE_WEB_READY_DIR")
    if ready_dir:
        os.makedirs(ready_dir, exist_ok=True)
        with open(os.path.join(ready_dir, str(os.getpid())), "w") as mark:
            mark.write("ready\n")
