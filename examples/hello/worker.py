"""hello worker: a background process with no port.

Every 2 seconds it prints a heartbeat with its replica name and, when
DATABASE_URL is set, the number of visits recorded by the web replicas.
Exits with status 0 on SIGTERM (or Ctrl-C), promptly, even in the middle of a query.
"""

import os
import signal
import sys
import time

import pg

REPLICA = os.environ.get("BERTH_REPLICA", "worker.0")
RELEASE = os.environ.get("BERTH_RELEASE", "dev")
INTERVAL = 2.0


class Stop(Exception):
    pass


def on_signal(signum, _frame):
    # Raised in the main thread wherever it is: in time.sleep() or inside
    # subprocess.run(), which then kills the psql child before re-raising.
    raise Stop(signal.Signals(signum).name)


def say(line):
    sys.stdout.write(f"{REPLICA} {line}\n")
    sys.stdout.flush()


def main():
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    say(f"worker started release={RELEASE} pid={os.getpid()} db={'yes' if pg.configured() else 'no'}")
    beat = 0
    try:
        while True:
            beat += 1
            line = f"heartbeat #{beat} release={RELEASE}"
            if pg.configured():
                try:
                    line += f" visits={pg.count_visits(timeout=5.0)}"
                except pg.DatabaseError as exc:
                    line += f" visits=? ({exc})"
            say(line)
            time.sleep(INTERVAL)
    except Stop as why:
        say(f"got {why}, exiting")
    return 0


if __name__ == "__main__":
    sys.exit(main())
