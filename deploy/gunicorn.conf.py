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


# Under `make run`, scripts/run_local.py creates this file in OPENTRACE_WEB_READY_DIR while it
# reloads the web server: the workers of the new code then pass every /healthz check before
# they take a connection, so a release that is not healthy never answers a request (the old
# workers keep serving, and the agent's healthcheck rolls it back).
RELOAD_GATE = "reloading"


def post_worker_init(worker: object) -> None:
    """The app is loaded (opentrace/wsgi.py warms it up): this worker can take requests.

    During a reload it first waits, without accepting, until its checks pass.
    """
    ready_dir = os.environ.get("OPENTRACE_WEB_READY_DIR")
    if ready_dir:
        os.makedirs(ready_dir, exist_ok=True)
        if os.path.exists(os.path.join(ready_dir, RELOAD_GATE)) and not _healthy(worker):
            return  # told to stop while waiting: never ready
        with open(os.path.join(ready_dir, str(os.getpid())), "w") as mark:
            mark.write("ready\n")


def _healthy(worker: object) -> bool:
    """Until every check of /healthz passed in this worker (True), or it is told to stop."""
    import time

    from opentrace import health  # the worker has loaded the app; the master never runs this

    reported: set[str] = set()
    while getattr(worker, "alive", True):
        results = health.run_checks()
        failing = sorted(name for name, result in results.items() if result != "ok")
        if not failing:
            return True
        if set(failing) != reported:
            reported = set(failing)
            worker.log.warning(  # type: ignore[attr-defined]
                "new worker not taking requests until its checks pass: failing %s", ", ".join(failing)
            )
        worker.notify()  # type: ignore[attr-defined]  # alive for the master while it waits
        time.sleep(1.0)
    return False
